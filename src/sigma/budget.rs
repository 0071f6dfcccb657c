//! What one rule may cost to compile, and what the whole set may.
//!
//! A rule directory is third-party content read by every search: a rule
//! whose values expand into millions of alternatives, or whose regexes
//! compile to gigabytes, must be skipped with a reason before it costs
//! that, not after. The bounds sit far above SigmaHQ's rules (longest
//! value 178 bytes, most alternatives 4,432 in one rule, at most 19
//! regexes in one rule) and far below what hurts a search head.
//!
//! Memory is an estimate made while compiling (the regexes' own figure,
//! a per-byte charge for strings and their index literals), cheap enough
//! that loading costs nothing more to measure.

/// Longest value, as written, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 << 10;

/// Most alternatives one rule may compile to (values × `windash` /
/// `base64offset` variants).
pub const MAX_ALTERNATIVES: usize = 20_000;

/// Most variants `windash` may make of one value (5 per dash: 5 dashes).
pub const MAX_WINDASH_VARIANTS: usize = 3_125;

/// The estimated memory one rule may take (SigmaHQ's largest: 5.9 MiB,
/// the vulnerable-driver hash list).
pub const MAX_RULE_MEMORY: usize = 32 << 20;

/// The most one regex may compile to (its NFA); the rule's remaining
/// budget lowers it further.
pub const MAX_REGEX_MEMORY: usize = 8 << 20;

/// The lazy DFA cache each regex may grow while matching (per thread); the
/// regex crate's default is 2 MiB, which SigmaHQ's short-value regexes
/// never need. Charged to the rule up front, since it grows on use.
pub const REGEX_CACHE: usize = 256 << 10;

/// Charge per byte of string pattern: the pattern itself, its searcher
/// and its share of the candidate index's automaton (a state per byte).
const PER_PATTERN_BYTE: usize = 24;

/// Charge per alternative, whatever its length.
const PER_ALTERNATIVE: usize = 96;

/// `[sigma] memory_mb` when not set: about eight times what SigmaHQ's full
/// set is estimated at (60 MiB for 2,238 rules), well under what a search head gives a search.
pub const DEFAULT_SET_MEMORY_MB: u64 = 512;

/// What one rule has cost so far while it compiles.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cost {
    /// Alternatives compiled.
    pub alternatives: usize,
    /// Estimated bytes.
    pub memory: usize,
}

impl Cost {
    /// Checks a value as written before anything is built from it.
    pub fn value(&self, text: &str) -> Result<(), String> {
        if text.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "a value longer than {} KiB ({} KiB)",
                MAX_VALUE_BYTES >> 10,
                text.len().div_ceil(1024)
            ));
        }
        Ok(())
    }

    /// Checks that `n` more alternatives fit, before they are made.
    pub fn room_for(&self, n: usize) -> Result<(), String> {
        if self.alternatives.saturating_add(n) > MAX_ALTERNATIVES {
            return Err(format!(
                "values expand to more than {MAX_ALTERNATIVES} alternatives"
            ));
        }
        Ok(())
    }

    /// Charges one string alternative of `len` bytes.
    pub fn string(&mut self, len: usize) -> Result<(), String> {
        self.room_for(1)?;
        self.alternatives += 1;
        self.charge(PER_ALTERNATIVE + len.saturating_mul(PER_PATTERN_BYTE))
    }

    /// Charges one compiled regex of `heap` bytes (and its cache).
    pub fn regex(&mut self, heap: usize) -> Result<(), String> {
        self.room_for(1)?;
        self.alternatives += 1;
        self.charge(heap.saturating_add(REGEX_CACHE))
    }

    /// What a regex of this rule may still compile to.
    pub fn regex_limit(&self) -> usize {
        MAX_RULE_MEMORY
            .saturating_sub(self.memory)
            .saturating_sub(REGEX_CACHE)
            .min(MAX_REGEX_MEMORY)
    }

    fn charge(&mut self, bytes: usize) -> Result<(), String> {
        self.memory = self.memory.saturating_add(bytes);
        if self.memory > MAX_RULE_MEMORY {
            return Err(self.over());
        }
        Ok(())
    }

    /// The reason a rule past [`MAX_RULE_MEMORY`] is skipped.
    pub fn over(&self) -> String {
        format!(
            "compiles to more than {} MiB (estimated)",
            MAX_RULE_MEMORY >> 20
        )
    }
}
