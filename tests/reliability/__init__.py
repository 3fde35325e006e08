"""Fault injection: every fault a user can meet gets a clear error or a resume (issue: reliability)."""
