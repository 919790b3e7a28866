-- An alert's messages to one recipient of a route are delivered in the order they were
-- queued: a claim skips a row while an earlier one of the same alert, route and recipient is
-- still pending or being sent (a PagerDuty `acknowledge` or `resolve` must not overtake its
-- `trigger` waiting for a retry; another recipient of an email route does not wait). This
-- index answers that question for each candidate row.
CREATE INDEX outbox_unfinished ON outbox (alert_id, route, recipient, id)
    WHERE state IN ('pending', 'sending') AND alert_id IS NOT NULL;
