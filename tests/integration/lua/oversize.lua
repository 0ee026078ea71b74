-- (e) Message size, with [plans.free] max_message_size = 1000.
-- A client announcing SIZE=5000 is refused at MAIL FROM; one that does not
-- announce it is refused while the body streams in, once it passes the
-- limit (552 5.3.4, in the decision log), before the end of the message.
-- -D sock, libdir, client, sender, qid (qid.."S", qid.."B")
dofile(libdir .. "/osf.lua")

local conn = open(client, "mail.customer.test")
mail(conn, qid .. "S", sender, "", "SIZE=5000")
expect(conn, "MAIL FROM:<" .. sender .. "> SIZE=5000", SMFIR_REPLYCODE)

local id = qid .. "B"
mail(conn, id, sender, "")
expect(conn, "MAIL FROM:<" .. sender .. ">", SMFIR_CONTINUE)
rcpt(conn, id, "someone@example.org")
expect(conn, "RCPT TO:<someone@example.org>", SMFIR_CONTINUE)
headers(conn, sender, "big-" .. id)
local line = string.rep("x", 78) .. "\r\n"
body(conn, string.rep(line, 5))
expect(conn, "body chunk 1 (400 bytes)", SMFIR_CONTINUE)
body(conn, string.rep(line, 10))
expect(conn, "body chunk 2 (800 bytes more)", SMFIR_REPLYCODE)
mt.disconnect(conn)
print("PASS oversize: SIZE= refused at MAIL, streamed body refused")
