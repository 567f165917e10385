package main

import "testing"

func TestJournalOnlyWhenStderrIsTheJournalStream(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if underJournal() {
		t.Fatal("no JOURNAL_STREAM, yet journal logging")
	}
	// A stream that is not our stderr (e.g. inherited by a child whose
	// stderr was redirected) must not switch to the journal.
	t.Setenv("JOURNAL_STREAM", "1:1")
	if underJournal() {
		t.Fatal("JOURNAL_STREAM of another file taken for ours")
	}
}
