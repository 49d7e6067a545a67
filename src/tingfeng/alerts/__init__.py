"""Alerts (预警): rules, the outbox and its channels, escalation (逐级上报) and the duty roster (值班).

- `rules`: the conditions a rule puts on a post, an event, a level change or a spike
- `engine`: where rules are evaluated and alerts raised, folded, held for a digest
- `recipients`: people, roles, departments and "on duty" turned into users
- `outbox`, `dispatch`, `channels`, `messages`: what is sent, how, retried, never twice
- `escalation`, `ack`, `digest`, `clock`: what happens when nobody answers
- `duty`: shifts, rotations, swaps, shift reports and zero reports
"""
