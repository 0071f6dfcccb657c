//! A stable 64-bit digest of a stored process creation.
//!
//! Why: a search that meets a GUID the table already holds must notice when
//! its creation contradicts the stored one (tamper evidence, issue 12)
//! without reading every stored row back: a warm scheduled search sees
//! thousands of known processes per chunk, and reading their command lines
//! would undo what `known_processes` saves. The probe it already makes
//! reads this digest too; only a mismatch costs a full read and a
//! field-by-field comparison.
//!
//! It is written to disk and compared across builds, so it must never
//! depend on a random seed or on std's unspecified `DefaultHasher`: fixed
//! constants, 8 bytes per step with a folded multiply (the wyhash
//! construction; ~GB/s, so a chunk's command lines cost little on the
//! writer thread). Not a cryptographic hash: a forger who finds a
//! collision still cannot change the stored row (first write wins), only
//! stay out of the conflict log.

use super::processes::ProcessRow;

use crate::digest::Digest;

/// The digest of what a row says about its process's place in the tree:
/// parent GUID, images, command lines (as stored: capped) and host. Not
/// the event time, whose text form varies between searches, nor
/// `seen_at`; nor the hashes, whose hex text a search would have to format
/// for every known process just to compare (they are compared, field by
/// field, once a digest differs). Stored as SQLite's signed integer.
pub(crate) fn of_row(p: &ProcessRow<'_>) -> i64 {
    of_parts(
        p.parent_guid,
        [
            &p.image,
            &p.command_line,
            &p.parent_image,
            &p.parent_command_line,
            &p.host,
        ],
    )
}

/// [`of_row`] from its parts: the parent GUID (`None` and 0 alike) and
/// image, command line, parent image, parent command line, host.
pub fn of_parts(parent_guid: Option<u128>, texts: [&str; 5]) -> i64 {
    let mut d = Digest::new();
    let parent = parent_guid.unwrap_or(0);
    d.word(parent as u64);
    d.word((parent >> 64) as u64);
    for v in texts {
        d.bytes(v.as_bytes());
    }
    d.finish() as i64
}

#[cfg(test)]
mod tests {
    use super::super::processes::tests::process;
    use super::*;

    #[test]
    fn fixed_across_builds_and_sensitive_to_every_field() {
        let p = process(7, Some(3));
        let base = of_row(&p.as_row());
        // A constant: the digest is stored, so a change of algorithm would
        // turn every stored row into a "conflict".
        assert_eq!(base, of_row(&process(7, Some(3)).as_row()));
        assert_eq!(base, -7_136_696_984_717_600_237, "{base}");
        let mut q = p.clone();
        q.time = 5.0;
        q.seen_at = 99;
        q.md5 = None;
        q.sha1 = Some("00".repeat(20));
        assert_eq!(
            of_row(&q.as_row()),
            base,
            "time, seen_at, hashes do not count"
        );
        q.parent_guid = Some(0);
        assert_ne!(of_row(&q.as_row()), base);
        q.parent_guid = None;
        assert_eq!(of_row(&q.as_row()), of_row(&q.clone().as_row()));
        type Change = Box<dyn Fn(&mut super::super::StoredProcess)>;
        let variants: Vec<Change> = vec![
            Box::new(|q| q.parent_guid = Some(4)),
            Box::new(|q| q.parent_guid = None),
            Box::new(|q| q.image.push('x')),
            Box::new(|q| q.command_line.push('x')),
            Box::new(|q| q.parent_image = "C:\\Windows\\userinit.exe".into()),
            Box::new(|q| q.parent_command_line.clear()),
            Box::new(|q| q.host = "OTHER".into()),
            // Bytes moved between fields.
            Box::new(|q| {
                q.parent_image.push_str("explorer.exe");
                q.parent_command_line.clear();
            }),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut q = p.clone();
            change(&mut q);
            assert_ne!(of_row(&q.as_row()), base, "variant {i}");
        }
    }
}
