-- (c) A client on third-party hosting: its address is not registered, but
-- the MTA authenticated it as a registered SASL account ({auth_authen} at
-- MAIL). The message goes through. Then an unknown login from the same
-- address is refused at MAIL FROM.
-- -D sock, libdir, client, sender, login, qid (queue ids qid.."A", qid.."U")
dofile(libdir .. "/osf.lua")

local conn = open(client, "shared-hosting.example.net")
mail(conn, qid .. "A", sender, login)
expect(conn, "MAIL FROM:<" .. sender .. "> AUTH=" .. login, SMFIR_CONTINUE)
rcpt(conn, qid .. "A", "someone@example.org")
expect(conn, "RCPT TO:<someone@example.org>", SMFIR_CONTINUE)
headers(conn, sender, "sasl-" .. qid)
body(conn, "Sent with a SASL login.\r\n")
expect(conn, "body", SMFIR_CONTINUE)
eom(conn, qid .. "A")
expect(conn, "end of message", SMFIR_ACCEPT)
mt.disconnect(conn)
print("PASS sasl accepted login=" .. login)

conn = open(client, "shared-hosting.example.net")
mail(conn, qid .. "U", sender, "nobody-" .. login)
expect(conn, "MAIL FROM:<" .. sender .. "> AUTH=nobody-" .. login, SMFIR_REPLYCODE)
mt.disconnect(conn)
print("PASS sasl refused login=nobody-" .. login)
