-- Shared by the miltertest scripts: a Sendmail-style milter session and checks.
--
-- The macros are those contrib/sendmail/osfmilter.mc has Sendmail send
-- (miltertest sends none by itself): i and the {auth_*}/{mail_*} set at
-- MAIL, i and {rcpt_*} at RCPT, i and {msg_id} at the end of the message.
-- Each mt.macro() call must come right before its command: libmilter drops
-- the MAIL and RCPT macros when HELO arrives after them.
--
-- Every check that fails calls fail(): miltertest exits with status 1 on
-- error() but does not print its message, so fail() prints it first.
-- Globals from the command line (-D name=value): sock, the milter's socket.

-- miltertest names only the CONNECT, HELO, MAIL and RCPT macro types; the
-- others are the protocol's command letters.
SMFIC_BODYEOB = SMFIC_BODYEOB or string.byte("E")

local NAMES = {
  [SMFIR_CONTINUE] = "CONTINUE",
  [SMFIR_ACCEPT] = "ACCEPT",
  [SMFIR_REJECT] = "REJECT",
  [SMFIR_TEMPFAIL] = "TEMPFAIL",
  [SMFIR_REPLYCODE] = "REPLYCODE",
  [SMFIR_DISCARD] = "DISCARD",
}

function reply_name(reply)
  return NAMES[reply] or string.format("reply %q", tostring(reply))
end

function fail(message)
  print("FAIL " .. message)
  error(message)
end

-- An mt.* call returns nil on success, else an error text.
function check(what, err)
  if err ~= nil then
    fail(what .. ": " .. tostring(err))
  end
end

-- The milter's answer to the last command must be `want`.
function expect(conn, what, want)
  local got = mt.getreply(conn)
  if got ~= want then
    fail(string.format("%s: expected %s, got %s", what, reply_name(want), reply_name(got)))
  end
  print(string.format("%s -> %s", what, reply_name(got)))
end

-- A new SMTP connection from `client` (an IPv4 or IPv6 address).
function open(client, helo)
  -- Retries while the milter is still starting (40 x 0.25 s).
  local conn = mt.connect(sock, 40, 0.25)
  if conn == nil then
    fail("cannot connect to the milter at " .. sock)
  end
  check("negotiate", mt.negotiate(conn, nil, nil, nil))
  check("connect macros", mt.macro(conn, SMFIC_CONNECT, "j", "relay.osf.test",
    "{daemon_name}", "MTA", "_", helo .. " [" .. client .. "]"))
  check("connect", mt.conninfo(conn, helo, client))
  expect(conn, "connect " .. client, SMFIR_CONTINUE)
  check("HELO", mt.helo(conn, helo))
  expect(conn, "HELO " .. helo, SMFIR_CONTINUE)
  return conn
end

-- MAIL FROM with the queue id `qid`; `login` is the SASL login ("" for none);
-- further arguments are ESMTP parameters such as "SIZE=5000".
function mail(conn, qid, sender, login, ...)
  local macros = {"i", qid, "{mail_mailer}", "esmtp", "{mail_addr}", sender}
  if login ~= nil and login ~= "" then
    for _, value in ipairs({"{auth_type}", "PLAIN", "{auth_authen}", login, "{auth_ssf}", "0"}) do
      table.insert(macros, value)
    end
  end
  check("MAIL macros", mt.macro(conn, SMFIC_MAIL, table.unpack(macros)))
  check("MAIL FROM", mt.mailfrom(conn, "<" .. sender .. ">", ...))
end

function rcpt(conn, qid, recipient)
  check("RCPT macros", mt.macro(conn, SMFIC_RCPT, "i", qid, "{rcpt_mailer}", "esmtp",
    "{rcpt_addr}", recipient))
  check("RCPT TO", mt.rcptto(conn, "<" .. recipient .. ">"))
end

-- The header block (header and end-of-header callbacks do not answer).
function headers(conn, from, subject)
  check("From header", mt.header(conn, "From", from))
  check("Subject header", mt.header(conn, "Subject", subject))
  check("Message-ID header", mt.header(conn, "Message-ID", "<" .. subject .. "@osf.test>"))
  check("end of headers", mt.eoh(conn))
end

function body(conn, text)
  check("body", mt.bodystring(conn, text))
end

function eom(conn, qid)
  check("EOM macros", mt.macro(conn, SMFIC_BODYEOB, "i", qid, "{msg_id}", "<" .. qid .. "@osf.test>"))
  check("end of message", mt.eom(conn))
end
