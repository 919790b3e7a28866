-- An alert's notifications on one route are delivered in the order they were queued: a
-- claim skips a row while an earlier one of the same alert and route is still pending or
-- being sent (a PagerDuty `acknowledge` or `resolve` must not overtake its `trigger` waiting
-- for a retry). This index answers that question for each candidate row.
CREATE INDEX outbox_unfinished ON outbox (alert_id, route, id)
    WHERE state IN ('pending', 'sending');
