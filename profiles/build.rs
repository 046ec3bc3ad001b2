//! Embeds every file of the JP data folders, so adding a code table, a profile or a
//! questionnaire is a data change: drop the file into its folder and rebuild.

use std::fmt::Write as _;
use std::path::Path;

/// (constant name, folder under `profiles/`)
const FOLDERS: &[(&str, &str)] = &[
    ("JP_TERMINOLOGY", "jp/terminology"),
    ("JP_STRUCTURE", "jp/structure"),
    ("JP_VACCINATION", "jp/vaccination"),
    ("JP_QUESTIONNAIRES", "jp/questionnaires"),
    ("JP_MUNICIPAL", "jp/municipal"),
    ("JP_CONSENT", "jp/consent"),
    ("JP_ROUTING", "jp/routing"),
    ("JP_BILLING", "jp/billing"),
    ("JP_PHR", "jp/phr"),
    ("JP_PORTAL", "jp/portal"),
];

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut out = String::new();
    for (constant, folder) in FOLDERS {
        let dir = Path::new(&root).join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        // Name order, so the embedded list (and anything derived from it) is reproducible.
        files.sort();
        writeln!(out, "pub const {constant}: &[(&str, &str)] = &[").unwrap();
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            writeln!(
                out,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let target =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("jp_data.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
