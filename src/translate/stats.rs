//! What a translation carried over, and what it could not: counted per batch, added up
//! in input order, reported.

use crate::rdb::Str;

/// What the translation carried over and what it could not.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub keys: u64,
    pub commands: u64,
    pub restores: u64,
    /// Keys that went as commands in restore mode (too big, or a type the target lacks).
    pub restore_fallbacks: u64,
    /// Plain strings that `replay --mode restore` sent in MSET batches instead of one
    /// RESTORE each (see [`super::Translator::batchable_string`]).
    pub batched_strings: u64,
    pub skipped_expired: u64,
    /// Hash fields left out because their expiry had passed (hashes left with none are
    /// counted in `skipped_expired`).
    pub skipped_expired_fields: u64,
    /// Keys with a past expiry (theirs or their fields') kept because a log command of
    /// the job writes to them (see [`crate::expiry`]).
    pub kept_for_log: u64,
    pub skipped_modules: u64,
    /// Keys refused: nothing was written for them.
    pub refused: u64,
    /// The first refused keys, with the reason.
    pub refused_examples: Vec<(String, String)>,
    pub field_ttls_dropped: u64,
    /// Pending entries whose message was deleted: no command recreates them.
    pub pel_deleted: u64,
    /// Consumers whose seen/active times restart when recreated by commands.
    pub consumer_times_reset: u64,
    pub functions: u64,
    pub functions_skipped: u64,
    pub scripts: u64,
}

impl Stats {
    /// Adds the counts of a later batch.
    pub fn merge(&mut self, o: Stats) {
        // Destructured so that a new field cannot be forgotten here.
        let Stats {
            keys,
            commands,
            restores,
            restore_fallbacks,
            batched_strings,
            skipped_expired,
            skipped_expired_fields,
            kept_for_log,
            skipped_modules,
            refused,
            refused_examples,
            field_ttls_dropped,
            pel_deleted,
            consumer_times_reset,
            functions,
            functions_skipped,
            scripts,
        } = o;
        self.keys += keys;
        self.commands += commands;
        self.restores += restores;
        self.restore_fallbacks += restore_fallbacks;
        self.batched_strings += batched_strings;
        self.skipped_expired += skipped_expired;
        self.skipped_expired_fields += skipped_expired_fields;
        self.kept_for_log += kept_for_log;
        self.skipped_modules += skipped_modules;
        self.refused += refused;
        let room = 10usize.saturating_sub(self.refused_examples.len());
        self.refused_examples.extend(refused_examples.into_iter().take(room));
        self.field_ttls_dropped += field_ttls_dropped;
        self.pel_deleted += pel_deleted;
        self.consumer_times_reset += consumer_times_reset;
        self.functions += functions;
        self.functions_skipped += functions_skipped;
        self.scripts += scripts;
    }

    pub(super) fn refuse(&mut self, key: &Str<'_>, why: String) {
        self.refused += 1;
        if self.refused_examples.len() < 10 {
            self.refused_examples.push((crate::rdb::escape_key(&key.bytes()), why));
        }
    }

    /// The report, one line per non-zero count, for stderr.
    pub fn report(&self) -> String {
        let mut lines = vec![format!(
            "{} keys as {} commands ({} RESTORE, {} fell back to commands)",
            self.keys, self.commands, self.restores, self.restore_fallbacks
        )];
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                lines.push(format!("{n} {what}"));
            }
        };
        add(self.batched_strings, "plain strings without expiry sent in MSET batches (less work for the destination)");
        add(self.skipped_expired, "keys skipped: expired (or within --expire-margin); --keep-expired sends them");
        add(self.skipped_expired_fields, "hash fields left out: expired (or within --expire-margin)");
        add(
            self.kept_for_log,
            "expired keys kept for the AOF commands that write to them (Redis expires nothing while it loads an AOF): \
             removed after the log unless it gave them a new expiry",
        );
        add(self.skipped_modules, "module keys skipped: commands cannot carry module values (use --mode restore)");
        add(self.field_ttls_dropped, "hash field TTLs dropped (--drop-field-ttl)");
        add(
            self.pel_deleted,
            "pending entries not recreated: their messages were deleted (only restore mode keeps them)",
        );
        add(
            self.consumer_times_reset,
            "stream consumers recreated with fresh seen/active times (only restore mode keeps them)",
        );
        add(self.functions, "function libraries (FUNCTION LOAD REPLACE)");
        add(self.functions_skipped, "functions skipped: 7.0-rc single functions or a destination older than 7.0");
        add(self.scripts, "Lua scripts (SCRIPT LOAD)");
        add(self.refused, "keys refused (nothing sent for them)");
        for (k, why) in &self.refused_examples {
            lines.push(format!("  refused \"{k}\": {why}"));
        }
        lines.join("\n")
    }
}
