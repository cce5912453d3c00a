//! `zincctl`: Zinc's operator tool.

fn main() {
    eprintln!("zincctl: no commands yet");
    std::process::exit(2);
}
