//! Four-letter words: the admin commands (`ruok`, `stat`, `mntr`, ...) a client may send instead
//! of a handshake. On a fresh connection the first 4 bytes are read as a frame length; if they
//! spell a known command, the server runs it, writes its text output and closes the connection.
//! Commands are recognised only before the handshake, so they never collide with a real length.
//! This module only recognises them; the server produces the output.

/// Every command ZooKeeper knows (`FourLetterCommands`), plus the telnet close sequence, which
/// ZooKeeper also recognises so that it can close the connection quietly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FourLetterWord {
    /// Configuration of the serving server.
    Conf,
    /// Connections and sessions, one line each.
    Cons,
    /// Reset connection statistics.
    Crst,
    /// Sizes of the snapshot and log directories.
    Dirs,
    /// Outstanding sessions and their ephemeral nodes.
    Dump,
    /// Environment of the server.
    Envi,
    /// Get the trace mask.
    Gtmk,
    /// Liveness: answers `imok`.
    Ruok,
    /// Set the trace mask; followed on the wire by an 8-byte mask.
    Stmk,
    /// Reset server statistics.
    Srst,
    /// Server details without the connection list.
    Srvr,
    /// Server details and connections.
    Stat,
    /// Watches by session.
    Wchc,
    /// Watches by path.
    Wchp,
    /// Watch summary.
    Wchs,
    /// Monitoring key/value lines.
    Mntr,
    /// `ro` or `rw`.
    Isro,
    /// Tree digest history.
    Hash,
    /// The bytes telnet sends when it closes (0xfff4fffd): close without output.
    TelnetClose,
}

/// Each command with its wire bytes, in `FourLetterWord` order.
const TABLE: [(FourLetterWord, [u8; 4]); 19] = [
    (FourLetterWord::Conf, *b"conf"),
    (FourLetterWord::Cons, *b"cons"),
    (FourLetterWord::Crst, *b"crst"),
    (FourLetterWord::Dirs, *b"dirs"),
    (FourLetterWord::Dump, *b"dump"),
    (FourLetterWord::Envi, *b"envi"),
    (FourLetterWord::Gtmk, *b"gtmk"),
    (FourLetterWord::Ruok, *b"ruok"),
    (FourLetterWord::Stmk, *b"stmk"),
    (FourLetterWord::Srst, *b"srst"),
    (FourLetterWord::Srvr, *b"srvr"),
    (FourLetterWord::Stat, *b"stat"),
    (FourLetterWord::Wchc, *b"wchc"),
    (FourLetterWord::Wchp, *b"wchp"),
    (FourLetterWord::Wchs, *b"wchs"),
    (FourLetterWord::Mntr, *b"mntr"),
    (FourLetterWord::Isro, *b"isro"),
    (FourLetterWord::Hash, *b"hash"),
    (FourLetterWord::TelnetClose, [0xff, 0xf4, 0xff, 0xfd]),
];

impl FourLetterWord {
    /// Every command, in declaration order.
    pub const ALL: [FourLetterWord; 19] = {
        let mut all = [FourLetterWord::Conf; 19];
        let mut index = 0;
        while index < TABLE.len() {
            all[index] = TABLE[index].0;
            index += 1;
        }
        all
    };

    /// The command spelled by the first 4 bytes of a fresh connection, if any. Fewer than 4
    /// bytes is `None`: wait for more.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let prefix = bytes.first_chunk::<4>()?;
        TABLE
            .iter()
            .find(|(_, wire)| wire == prefix)
            .map(|(word, _)| *word)
    }

    /// The command's name as used in `4lw.commands.whitelist` (`"telnet close"` for the
    /// telnet sequence, which is always allowed).
    pub fn name(self) -> &'static str {
        match self {
            FourLetterWord::TelnetClose => "telnet close",
            word => {
                let wire = &TABLE[word as usize].1;
                // The table holds ASCII for every word but the telnet sequence.
                std::str::from_utf8(wire).unwrap_or("")
            }
        }
    }

    /// The command named `name` in a whitelist (exact, lower-case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|word| word.name() == name)
    }

    /// Bytes the command carries after its 4 letters (`stmk`'s 8-byte trace mask).
    pub fn argument_bytes(self) -> usize {
        match self {
            FourLetterWord::Stmk => 8,
            _ => 0,
        }
    }
}

/// Parses a `4lw.commands.whitelist` value: comma-separated names, `*` for every command.
/// Unknown names are ignored. `srvr` is always allowed (startup scripts depend on it), and so is
/// `isro` when `read_only_mode` is enabled. The result is sorted and free of duplicates.
pub fn parse_whitelist(value: &str, read_only_mode: bool) -> Vec<FourLetterWord> {
    let mut words: Vec<FourLetterWord> = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name == "*" {
            words.extend(FourLetterWord::ALL);
        } else if let Some(word) = FourLetterWord::from_name(name) {
            words.push(word);
        }
    }
    words.push(FourLetterWord::Srvr);
    if read_only_mode {
        words.push(FourLetterWord::Isro);
    }
    words.sort();
    words.dedup();
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_the_enum() {
        for (index, (word, _)) in TABLE.iter().enumerate() {
            assert_eq!(*word as usize, index);
        }
    }

    #[test]
    fn names_round_trip_through_bytes() {
        for word in FourLetterWord::ALL {
            assert_eq!(FourLetterWord::from_name(word.name()), Some(word));
            if word != FourLetterWord::TelnetClose {
                assert_eq!(
                    FourLetterWord::from_bytes(word.name().as_bytes()),
                    Some(word)
                );
            }
        }
        assert_eq!(FourLetterWord::Ruok.name(), "ruok");
        assert_eq!(
            FourLetterWord::from_bytes(&[0xff, 0xf4, 0xff, 0xfd, 0]),
            Some(FourLetterWord::TelnetClose)
        );
    }

    #[test]
    fn handshakes_and_short_input_are_not_commands() {
        // A connect request's length prefix (e.g. 44 or 45 bytes).
        assert_eq!(FourLetterWord::from_bytes(&[0, 0, 0, 45]), None);
        assert_eq!(FourLetterWord::from_bytes(b"ruo"), None);
        assert_eq!(FourLetterWord::from_bytes(b"RUOK"), None);
        assert_eq!(
            FourLetterWord::from_bytes(b"ruokx"),
            Some(FourLetterWord::Ruok)
        );
    }

    #[test]
    fn whitelist_parsing() {
        assert_eq!(
            parse_whitelist("ruok, stat,bogus,", false),
            vec![
                FourLetterWord::Ruok,
                FourLetterWord::Srvr,
                FourLetterWord::Stat
            ]
        );
        assert_eq!(parse_whitelist("", true).len(), 2);
        assert_eq!(parse_whitelist("*", false).len(), FourLetterWord::ALL.len());
    }
}
