//! Embeds the query pack (`queries/*.sql`) in the binary, so that `\run NAME`
//! and `query --run NAME` work wherever the binary is installed.

use std::fmt::Write;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=queries");
    // Read at run time, not baked in with env!(): the target dir is shared by
    // clones, and cargo may reuse a build script compiled in another clone.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("queries");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the queries/ folder is part of the crate")
        .filter_map(|e| {
            let path = e.expect("a readable queries/ folder").path();
            let is_sql = path.extension().is_some_and(|x| x == "sql");
            let stem = path.file_stem()?.to_str()?.to_string();
            is_sql.then_some(stem)
        })
        .collect();
    names.sort();
    let mut code = String::from("/// The query pack: (name, SQL text), by name.\n");
    code.push_str("pub static PACK: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = dir.join(format!("{name}.sql"));
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("pack.rs");
    std::fs::write(out, code).expect("writing the query pack into OUT_DIR");
}
