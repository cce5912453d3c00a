//! `zinc`: the Zinc server.

fn main() {
    eprintln!("zinc: the server is not built yet");
    std::process::exit(2);
}
