-- A registered server an operator blocked (onveilig): refused at MAIL FROM
-- (554 5.7.1, in the decision log).
-- -D sock, libdir, client, sender, qid
dofile(libdir .. "/osf.lua")

local conn = open(client, "mail.customer.test")
mail(conn, qid, sender, "")
expect(conn, "MAIL FROM:<" .. sender .. "> from blocked " .. client, SMFIR_REPLYCODE)
mt.disconnect(conn)
print("PASS blocked " .. client .. " qid=" .. qid)
