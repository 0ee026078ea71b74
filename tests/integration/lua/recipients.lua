-- (d) Recipient limits, answered per recipient as Sendmail asks.
-- An unknown sender (its domain is not one of the customer's) may have 5
-- recipients on the free plan: RCPT 6 and 7 get a reply code (452 4.5.3,
-- in the decision log), and the message goes to the first 5.
-- Then a known envelope sender with 6 recipients whose From: header is
-- foreign: only the end of the message can tell, and answers 452 4.5.3
-- (mt.eom_check(conn, MT_SMTPREPLY, ...) does not see a reply code given at
-- the end of the message in miltertest 2.11, so the code is in the log too).
-- -D sock, libdir, client, unknown_sender, known_sender, qid (qid.."R", qid.."H")
dofile(libdir .. "/osf.lua")

local conn = open(client, "mail.customer.test")
local id = qid .. "R"
mail(conn, id, unknown_sender, "")
expect(conn, "MAIL FROM:<" .. unknown_sender .. ">", SMFIR_CONTINUE)
for n = 1, 7 do
  local recipient = "r" .. n .. "@example.org"
  rcpt(conn, id, recipient)
  expect(conn, "RCPT TO:<" .. recipient .. "> (" .. n .. ")",
    n <= 5 and SMFIR_CONTINUE or SMFIR_REPLYCODE)
end
headers(conn, unknown_sender, "newsletter-" .. id)
body(conn, "For the five recipients that were accepted.\r\n")
expect(conn, "body", SMFIR_CONTINUE)
eom(conn, id)
expect(conn, "end of message", SMFIR_ACCEPT)
print("PASS recipients: 5 accepted, 6th and 7th refused")

-- Same connection, next transaction.
id = qid .. "H"
mail(conn, id, known_sender, "")
expect(conn, "MAIL FROM:<" .. known_sender .. ">", SMFIR_CONTINUE)
for n = 1, 6 do
  local recipient = "h" .. n .. "@example.org"
  rcpt(conn, id, recipient)
  expect(conn, "RCPT TO:<" .. recipient .. "> (" .. n .. ")", SMFIR_CONTINUE)
end
headers(conn, unknown_sender, "forged-from-" .. id)
body(conn, "The From: header names a domain that is not the customer's.\r\n")
expect(conn, "body", SMFIR_CONTINUE)
eom(conn, id)
expect(conn, "end of message", SMFIR_REPLYCODE)
mt.disconnect(conn)
print("PASS recipients: header From unknown, 452 4.5.3 at end of message")
