-- (b) A client that is not registered and not authenticated: MAIL FROM is
-- answered with a reply code (550 5.7.1, checked in the milter's decision log;
-- miltertest shows only the kind of reply before the end of the message).
-- -D sock, libdir, client, sender, qid
dofile(libdir .. "/osf.lua")

local conn = open(client, "unknown.example.net")
mail(conn, qid, sender, "")
expect(conn, "MAIL FROM:<" .. sender .. "> from " .. client, SMFIR_REPLYCODE)
mt.disconnect(conn)
print("PASS relay_denied " .. client .. " qid=" .. qid)
