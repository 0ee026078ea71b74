-- osfmilter reports in SQL: the figures of `osfmilter report ...`, for SQLite and PostgreSQL.
--
-- Each query below reads the report_* views that schema revision 0004
-- creates (`osfmilter db upgrade`; the embedded SQLite database gets them at
-- start). The views:
--
--   report_monthly_volume  month, customer, plan, domain, direction, messages, bytes
--                          (domain '' is the customer's bucket for unknown senders)
--   report_customers       customer, plan, created_month
--   report_refused_events  at, identity, customer, action, reason, smtp_code,
--                          enhanced_code, queue_id, client_ip, node (every non-accept)
--   report_refusals        identity, customer, reason, count, last_at (all stored events)
--   report_states          kind, identity, customer, state, since, last_reason, last_actor
--   report_state_changes   at, identity, customer, old_state, new_state, reason, actor
--
-- Identities are named as in the events table and the decision log:
-- 'server:192.0.2.0/24', 'sasl:alice'; a client that is not registered is
-- 'unregistered:203.0.113.5'. Times are UTC.
--
-- Parameters are written :month and :since. In psql:
--     psql -v month="'2026-11'" -v since="'2026-11-01 00:00:00+00'" -f reports.sql
-- In the sqlite3 shell:
--     .parameter set :month "'2026-11'"
--     .parameter set :since "'2026-11-01 00:00:00'"
-- A :since for SQLite is 'YYYY-MM-DD HH:MM:SS' in UTC (it compares as text);
-- for PostgreSQL add the zone, '+00', or it is read in the session's zone.
--
-- The numbers written into the queries are the configuration defaults
-- ([plans.free] monthly_volume_base = 1000000000, inbound_volume_factor = 2;
-- [billing] paid_base_price = 10, paid_included_bytes = 1000000000,
-- paid_price_per_started_gb = 10, gb = 1000000000): change them here if
-- your configuration does.


-- name: monthly_volume
-- Outbound volume per customer and domain in a month, with the allowance the
-- milter holds it to: free plan = base + 2 × what that domain received this
-- month (the unknown-sender bucket '' gets the base only); paid = unlimited
-- (NULL).
SELECT o.customer, o.plan, o.domain, o.messages, o.bytes,
       COALESCE(i.bytes, 0) AS inbound_bytes,
       CASE WHEN o.plan = 'paid' THEN NULL
            WHEN o.domain = '' THEN 1000000000
            ELSE 1000000000 + 2 * COALESCE(i.bytes, 0) END AS allowance
FROM report_monthly_volume o
LEFT JOIN (SELECT domain, CAST(SUM(bytes) AS BIGINT) AS bytes
           FROM report_monthly_volume
           WHERE month = :month AND direction = 'inbound'
           GROUP BY domain) i
       ON i.domain = o.domain AND o.domain <> ''
WHERE o.month = :month AND o.direction = 'outbound'
ORDER BY o.customer, o.domain;


-- name: bill
-- The bill of a month: every customer that existed by its end. The volume
-- billed is the customer's outbound bytes over all its domains, the
-- unknown-sender bucket included. Paid: 10 including 1 GB, then 10 per
-- started GB (GB = 10^9 bytes):
--     amount = 10 + 10 × ceil(max(0, bytes − 1000000000) / 1000000000)
-- so 1000000000 bytes cost 10, 1000000001 cost 20, 2000000001 cost 30.
-- Free: 0.
SELECT customer, plan, messages, bytes, extra_gb,
       CASE WHEN plan = 'paid' THEN 10 + 10 * extra_gb ELSE 0 END AS amount
FROM (SELECT c.customer, c.plan,
             COALESCE(v.messages, 0) AS messages,
             COALESCE(v.bytes, 0) AS bytes,
             -- started GB over the included volume: (over + gb - 1) / gb, in integers
             CASE WHEN c.plan = 'paid' AND COALESCE(v.bytes, 0) > 1000000000
                  THEN (COALESCE(v.bytes, 0) - 1000000000 + 1000000000 - 1) / 1000000000
                  ELSE 0 END AS extra_gb
      FROM report_customers c
      LEFT JOIN (SELECT customer,
                        CAST(SUM(messages) AS BIGINT) AS messages,
                        CAST(SUM(bytes) AS BIGINT) AS bytes
                 FROM report_monthly_volume
                 WHERE month = :month AND direction = 'outbound'
                 GROUP BY customer) v
             ON v.customer = c.customer
      WHERE c.created_month <= :month) b
ORDER BY customer;


-- name: top_refused
-- The identities refused most often since a moment, per reason (every
-- tempfail and reject; the 20 first). report_refusals has the same over every
-- event still stored.
SELECT identity, customer, reason, COUNT(*) AS count, MAX(at) AS last_at
FROM report_refused_events
WHERE at >= :since
GROUP BY identity, customer, reason
ORDER BY count DESC, last_at DESC, identity, reason
LIMIT 20;


-- name: state_counts
-- Sender identities (SMTP servers and SASL logins) per state.
SELECT state, COUNT(*) AS identities
FROM report_states
GROUP BY state
ORDER BY state;


-- name: not_veilig
-- Every identity that is not veilig, since when, and why (its latest change).
SELECT identity, customer, state, since, last_actor, last_reason
FROM report_states
WHERE state <> 'veilig'
ORDER BY CASE state WHEN 'onveilig' THEN 0 ELSE 1 END, since, identity;


-- name: state_changes
-- State changes since a moment, newest first.
SELECT at, identity, customer, old_state, new_state, actor, reason
FROM report_state_changes
WHERE at >= :since
ORDER BY at DESC, identity;
