-- Stale-event guard: the last provider sequence (ADO rev, Jira timestamp) applied per issue.
ALTER TABLE external_issues ADD COLUMN last_event_seq BIGINT;
