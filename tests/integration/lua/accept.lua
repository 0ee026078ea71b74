-- (a) A registered SMTP server sends a clean message: accepted at the end.
-- The same server again over an IPv4-mapped IPv6 connection, then a server
-- registered by its IPv6 network.
-- -D sock, libdir, client4, client6, sender, qid (queue ids qid.."4", "M", "6")
dofile(libdir .. "/osf.lua")

local function send(client, id)
  local conn = open(client, "mail.customer.test")
  mail(conn, id, sender, "")
  expect(conn, "MAIL FROM:<" .. sender .. ">", SMFIR_CONTINUE)
  rcpt(conn, id, "someone@example.org")
  expect(conn, "RCPT TO:<someone@example.org>", SMFIR_CONTINUE)
  headers(conn, "Customer <" .. sender .. ">", "clean-" .. id)
  body(conn, "A clean message from a registered server.\r\n")
  expect(conn, "body", SMFIR_CONTINUE)
  eom(conn, id)
  expect(conn, "end of message", SMFIR_ACCEPT)
  mt.disconnect(conn)
  print("PASS accept " .. client .. " qid=" .. id)
end

send(client4, qid .. "4")
send("::ffff:" .. client4, qid .. "M")
send(client6, qid .. "6")
