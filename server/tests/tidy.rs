//! Tidy: the pure folders (DESIGN.md section 1) must not reach for sockets, files, the clock,
//! unseeded randomness or glommio. Those belong to the shell; the pure code takes time and bytes
//! as arguments so the simulator can drive it deterministically.

use std::path::{Path, PathBuf};

/// Folders (relative to the workspace root) whose code must stay pure.
const PURE_FOLDERS: &[&str] = &[
    "protocol/src",
    "storage/src/tree",
    "server/src/zab",
    "server/src/prep",
    "server/src/session",
    "server/src/watch",
    "server/src/exec",
];

/// Single pure files outside those folders.
const PURE_FILES: &[&str] = &[
    "server/src/prep.rs",
    "server/src/session.rs",
    "server/src/watch.rs",
    "server/src/acl.rs",
];

/// Names that mean I/O, time, unseeded randomness or the runtime.
const BANNED: &[&str] = &[
    "ToSocketAddrs",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "std::fs",
    "File::",
    "OpenOptions",
    "Instant::now",
    "SystemTime",
    "thread_rng",
    "rand::random",
    "from_entropy",
    "OsRng",
    "getrandom",
    "glommio",
    "tokio",
    "std::thread::sleep",
    "std::process",
    "std::env",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server crate sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `text` that use a banned name, skipping comments.
fn violations(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        for banned in BANNED {
            if code.contains(banned) {
                found.push((index + 1, *banned));
            }
        }
    }
    found
}

#[test]
fn pure_folders_stay_pure() {
    let root = workspace_root();
    let mut files = Vec::new();
    for folder in PURE_FOLDERS {
        rust_files(&root.join(folder), &mut files);
    }
    files.extend(
        PURE_FILES
            .iter()
            .map(|file| root.join(file))
            .filter(|p| p.exists()),
    );
    assert!(
        files
            .iter()
            .any(|file| file.ends_with("protocol/src/jute.rs")),
        "tidy found no files: the folder list is stale"
    );
    let mut report = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (line, banned) in violations(&text) {
            report.push(format!("{}:{line}: uses {banned}", file.display()));
        }
    }
    assert!(
        report.is_empty(),
        "impure code in pure folders:\n{}",
        report.join("\n")
    );
}

#[test]
fn tidy_catches_what_it_bans() {
    let sample = "use std::time::Instant;\nlet t = Instant::now();\n// Instant::now in a comment\n";
    assert_eq!(violations(sample), vec![(2, "Instant::now")]);
    assert_eq!(
        violations("let s = std::net::TcpStream::connect(a);"),
        vec![(1, "TcpStream")]
    );
}
