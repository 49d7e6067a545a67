"""Cases (舆情处理单): a matter from assessment to public reply to archive.

- `states`: the state machine: every action, from which states, to which, by which roles.
- `permissions`: which cases a person sees and may act on (role × department).
- `service`: opening cases and moving them through their states (with history and audit).
- `tasks`: tasks and progress notes inside a case.
- `templates`: case templates (preset tasks, deadlines, approval levels).
- `detail`: the cases a person may see, and everything a case's page shows.
- `routing`: which department a matter belongs to (属地管理, 谁主管谁负责).
- `deadlines`: due times per level and step on the Chinese working-day calendar.
- `clock`: reminders before deadlines, escalation when overdue, the relapse watch.
- `replies`: drafts with versions, the approval chain, the published record, the effect.
- `evidence`: pages kept as WARC records and screenshots, with their hashes.
- `board`: the public message board (留言板).
- `ledger`: the 台账 of key cases still open or watched.
"""
