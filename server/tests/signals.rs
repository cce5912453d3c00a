//! SIGTERM stops the server with status 0, also when the pipe its stderr went to has been closed
//! (a log collector gone): writing a log line must not panic the thread that handles signals.

mod common;

use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_server_even_with_stderr_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let mut child = common::spawn_zinc_piped(dir.path(), port);
    let address = format!("127.0.0.1:{port}").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::four_letter_word(address, "srvr").contains("Mode: ") {
        assert!(Instant::now() < deadline, "zinc never answered srvr");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "zinc exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Close the read end: the next log line meets a broken pipe.
    drop(child.stderr.take());
    // SAFETY: sends a signal to the child this test started.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zinc did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
