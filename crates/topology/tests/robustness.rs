//! No input makes the readers panic: truncated, mutated and pathological files give errors.

use std::path::PathBuf;

use proptest::prelude::*;
use sfbpatch_topology::{load, load_bytes};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "gitattributes"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_truncation_of_every_fixture_is_handled() {
    for (name, bytes) in fixtures() {
        let step = (bytes.len() / 400).max(1);
        for end in (0..bytes.len()).step_by(step) {
            // An error is fine, a panic is not; short prefixes can even be valid inventories.
            let _ = load_bytes(&bytes[..end], &name);
        }
    }
}

#[test]
fn pathological_inputs_give_errors() {
    let deep_xml = format!(
        "<Topology xmlns=\"urn:schema:Microsoft.Rtc.Management.Deploy.Topology.2008\">{}{}</Topology>",
        "<Sites>".repeat(50_000),
        "</Sites>".repeat(50_000)
    );
    assert!(load(&deep_xml, "deep.xml").unwrap().pools.is_empty());

    let deep_tbxml = format!(
        "<TopologyBuilder><NewTopology><PartialTopology><CentralSites><CentralSite SiteId=\"0\">{}{}</CentralSite></CentralSites></PartialTopology></NewTopology></TopologyBuilder>",
        (1..20_000)
            .map(|n| format!("<BranchSites><BranchSite SiteId=\"{n}\">"))
            .collect::<String>(),
        "</BranchSite></BranchSites>".repeat(19_999)
    );
    assert!(load(&deep_tbxml, "deep.tbxml").unwrap().pools.is_empty());

    let deep_toml = format!(
        "[[pool]]\nfqdn = {}1{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(load(&deep_toml, "deep.toml").is_err());

    let long_name = format!(
        "[[pool]]\nfqdn = \"{}.example.com\"\nedition = \"standard\"\nsite = \"x\"\n",
        "a".repeat(100_000)
    );
    let e = load(&long_name, "long.toml").unwrap_err();
    assert_eq!(e.code(), "SFB-T007");
    assert!(e.to_string().len() < 300, "{e}");

    for text in [
        "",
        " ",
        "\u{feff}",
        "<",
        "<?xml version=\"1.0\"?>",
        "[[pool]]",
        "[[pool]]\n[[pool]]",
        "\0\0\0",
    ] {
        assert!(load(text, "tiny").is_err(), "{text:?}");
    }
    let dtd = "<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY a \"aaaa\">]><Topology/>";
    assert_eq!(load(dtd, "dtd.xml").unwrap_err().code(), "SFB-T001");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_fixtures_never_panic(
        file in 0usize..64,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let files = fixtures();
        let (name, mut bytes) = files[file % files.len()].clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        let _ = load_bytes(&bytes, &name);
        let _ = load(&String::from_utf8_lossy(&bytes), &name);
    }
}

/// A file cut short names the place where it ends, not the start of the file.
#[test]
fn a_truncated_xml_file_names_where_it_ends() {
    let text = "<?xml version=\"1.0\"?>\n\
                <Topology xmlns=\"urn:schema:Microsoft.Rtc.Management.Deploy.Topology.2008\">\n\
                \x20 <Sites>\n\
                \x20   <CentralSite SiteId=\"1\"";
    let e = load(text, "cut.xml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cut.xml:4:28: malformed XML: the root node was opened but never closed [SFB-T001]"
    );

    let unclosed = "<Topology xmlns=\"urn:schema:Microsoft.Rtc.Management.Deploy.Topology.2008\">\n  <Sites/>\n";
    let e = load(unclosed, "unclosed.xml").unwrap_err();
    assert_eq!(e.span().line, 3, "{e}");
    assert_eq!(e.span().column, 1, "{e}");
}
