// The admin page (static/) and the schema are compiled into the binary, so a change to either
// must rebuild it even though no Rust file changed.
fn main() {
    println!("cargo:rerun-if-changed=static");
    println!("cargo:rerun-if-changed=schema.sql");
    let schema = std::fs::read_to_string("schema.sql").expect("schema.sql is readable");
    // Steps are numbered 1, 2, 3… in order; a gap or a duplicate would make user_version lie.
    let mut expected = 1;
    for line in schema.lines() {
        if let Some(rest) = line.strip_prefix("-- step ") {
            let number: u32 = rest.trim().parse().expect("a step marker is `-- step N`");
            assert_eq!(
                number, expected,
                "schema.sql steps must be numbered 1, 2, 3… without gaps"
            );
            expected += 1;
        }
    }
    assert!(expected > 1, "schema.sql has no `-- step N` marker");
}
