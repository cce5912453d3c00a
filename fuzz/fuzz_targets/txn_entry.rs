//! Log entries as the WAL and Zab proposals carry them: decoding must never panic, and a decoded
//! entry must re-encode to bytes that decode to the same entry (not always the same bytes: a
//! null ACL vector comes back as an empty one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zinc_protocol::txn::TxnEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = TxnEntry::from_bytes(data) {
        let again = TxnEntry::from_bytes(&entry.to_bytes());
        assert_eq!(again.as_ref(), Ok(&entry));
    }
});
