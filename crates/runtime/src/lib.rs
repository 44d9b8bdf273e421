//! Controller plumbing shared by both binaries: flags, logging, metrics, health, leader election, events, conditions.
