use super::*;

fn name(s: &str) -> ImageName {
    ImageName::parse(s).unwrap()
}

fn decode(host: &str, payload: &str) -> MdbRecord {
    MdbRecord::decode(host, payload.as_bytes())
        .unwrap()
        .expect("a record, not a removal")
}

fn error(host: &str, payload: &str) -> String {
    let text = MdbRecord::decode(host, payload.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(!text.contains('\n'), "{text}");
    text
}

fn file_error(bytes: &str) -> String {
    let text = parse_mdb_file(bytes.as_bytes()).unwrap_err().to_string();
    assert!(!text.contains('\n'), "{text}");
    text
}

#[test]
fn decodes_a_full_record_and_ignores_the_original_extra_fields() {
    let record = decode(
        "web1.example.com",
        r#"{"Hostname": "web1.example.com", "RequiredImage": "web/prod/2026-11-26",
            "PlannedImage": "/web/prod/2026-11-27", "DisableUpdates": true,
            "Tags": {"Role": "web", "DisableSafetyCheck": "true"},
            "IpAddress": "10.0.0.1", "Location": "dc1/row4", "OwnerGroups": ["ops"],
            "OwnerUsers": ["alice"], "Aliases": ["www"], "Future": {"x": [1]}}"#,
    );
    assert_eq!(record.hostname, "web1.example.com");
    assert_eq!(record.required_image, Some(name("web/prod/2026-11-26")));
    assert_eq!(record.planned_image, Some(name("web/prod/2026-11-27")));
    assert!(record.disable_updates);
    assert_eq!(record.tags["Role"], "web");
    assert!(record.safety_check_disabled());
}

#[test]
fn hostname_may_be_left_out_and_the_subject_names_the_host() {
    let record = decode("web1", r#"{"RequiredImage":"sparse.0"}"#);
    assert_eq!(record, MdbRecord::new("web1").requiring(name("sparse.0")));
    assert_eq!(
        decode("web1", r#"{"Hostname":"","RequiredImage":"sparse.0"}"#),
        record
    );
    assert_eq!(
        decode("web1", r#"{"Hostname":null,"RequiredImage":"sparse.0"}"#),
        record
    );
}

#[test]
fn a_record_without_an_image_is_a_known_machine_with_nothing_to_do() {
    for payload in [
        "{}",
        r#"{"RequiredImage":""}"#,
        r#"{"RequiredImage":null,"PlannedImage":"","DisableUpdates":null,"Tags":null}"#,
    ] {
        assert_eq!(decode("db1", payload), MdbRecord::new("db1"), "{payload}");
    }
}

#[test]
fn an_empty_payload_removes_the_machine() {
    for payload in ["", " ", "\n\t \r\n"] {
        assert_eq!(MdbRecord::decode("web1", payload.as_bytes()).unwrap(), None);
    }
}

#[test]
fn field_names_match_without_regard_to_case_like_the_original() {
    let record = decode(
        "web1",
        r#"{"hostname":"web1","requiredImage":"image.1","PLANNEDIMAGE":"image.2","disableupdates":true,"tags":{"A":"b"}}"#,
    );
    assert_eq!(record.required_image, Some(name("image.1")));
    assert_eq!(record.planned_image, Some(name("image.2")));
    assert!(record.disable_updates);
    assert_eq!(record.tags["A"], "b");
    let text = error("web1", r#"{"RequiredImage":"a","requiredimage":"b"}"#);
    assert!(text.contains("given twice"), "{text}");
}

#[test]
fn rejects_payloads_that_are_not_records() {
    assert!(error("web1", "{not json").contains("web1 is not valid JSON"));
    assert!(error("web1", "[1]").contains("expected a JSON object, not an array"));
    assert!(error("web1", "null").contains("not null"));
    assert!(error("web1", r#""sparse.0""#).contains("JSON object"));
}

#[test]
fn rejects_wrong_types_naming_the_field() {
    let cases = [
        (
            r#"{"RequiredImage": 5}"#,
            "RequiredImage must be a string, not the number 5",
        ),
        (
            r#"{"PlannedImage": ["x"]}"#,
            "PlannedImage must be a string, not an array",
        ),
        (r#"{"Hostname": true}"#, "Hostname must be a string"),
        (
            r#"{"DisableUpdates": "yes"}"#,
            "DisableUpdates must be true or false, not the string \"yes\"",
        ),
        (r#"{"Tags": ["a"]}"#, "Tags must be an object of strings"),
        (
            r#"{"Tags": {"DisableSafetyCheck": true}}"#,
            "tag \"DisableSafetyCheck\" must be a string",
        ),
    ];
    for (payload, expected) in cases {
        let text = error("web1", payload);
        assert!(text.contains(expected), "{payload}: {text}");
        assert!(text.starts_with("MDB record for web1"), "{text}");
    }
}

#[test]
fn rejects_a_hostname_other_than_the_subject() {
    let text = error("web1", r#"{"Hostname":"web2","RequiredImage":"sparse.0"}"#);
    assert!(text.contains("for web1 names another host, web2"), "{text}");
    // Exact match: the subject token is case-sensitive.
    assert!(error("web1", r#"{"Hostname":"WEB1"}"#).contains("another host"));
}

#[test]
fn rejects_invalid_hosts_and_image_names() {
    for host in ["", "a b", "web1.", "a..b", "a*", "a>b"] {
        assert!(error(host, "{}").contains("invalid host"), "{host:?}");
        assert!(error(host, "").contains("invalid host"), "{host:?}");
    }
    let text = error("web1", r#"{"RequiredImage":"bad name"}"#);
    assert!(
        text.contains("web1: RequiredImage: image name \"bad name\""),
        "{text}"
    );
    assert!(error("web1", r#"{"PlannedImage":"a..b"}"#).contains("PlannedImage"));
}

#[test]
fn safety_check_tag_is_on_when_present_unless_explicitly_false() {
    let tagged = |value: &str| {
        let mut record = MdbRecord::new("h");
        record
            .tags
            .insert(DISABLE_SAFETY_CHECK_TAG.into(), value.into());
        record.safety_check_disabled()
    };
    for value in ["true", "TRUE", "yes", "1", "on", ""] {
        assert!(tagged(value), "{value:?}");
    }
    for value in ["false", "False", "no", "off", "0", " false "] {
        assert!(!tagged(value), "{value:?}");
    }
    assert!(!MdbRecord::new("h").safety_check_disabled());
    let mut other = MdbRecord::new("h");
    other
        .tags
        .insert("disablesafetycheck".into(), "true".into());
    assert!(!other.safety_check_disabled());
}

#[test]
fn encodes_hostname_first_and_leaves_out_empty_fields() {
    let bare = MdbRecord::new("web1").requiring(name("sparse.0"));
    assert_eq!(
        String::from_utf8(bare.encode()).unwrap(),
        r#"{"Hostname":"web1","RequiredImage":"sparse.0"}"#
    );
    let mut full = bare.clone();
    full.planned_image = Some(name("sparse.1"));
    full.disable_updates = true;
    full.tags.insert("Role".into(), "web".into());
    assert_eq!(
        String::from_utf8(full.encode()).unwrap(),
        r#"{"Hostname":"web1","RequiredImage":"sparse.0","PlannedImage":"sparse.1","DisableUpdates":true,"Tags":{"Role":"web"}}"#
    );
    for record in [bare, full, MdbRecord::new("h")] {
        assert_eq!(
            decode(
                &record.hostname,
                &String::from_utf8(record.encode()).unwrap()
            ),
            record
        );
    }
}

#[test]
fn parses_the_original_mdb_file() {
    let file = r#"[
        {"Hostname": "web1", "RequiredImage": "image.1", "IpAddress": "10.0.0.1"},
        {"Hostname": "db1", "RequiredImage": "db.3", "PlannedImage": "db.4", "DisableUpdates": true},
        {"Hostname": "spare1"}
    ]"#;
    let records = parse_mdb_file(file.as_bytes()).unwrap();
    let hosts: Vec<_> = records.iter().map(|r| r.hostname.as_str()).collect();
    assert_eq!(hosts, ["web1", "db1", "spare1"]);
    assert_eq!(records[1].planned_image, Some(name("db.4")));
    assert_eq!(records[2].required_image, None);
    let wrapped = format!(r#"{{"Machines": {file}}}"#);
    assert_eq!(parse_mdb_file(wrapped.as_bytes()).unwrap(), records);
    assert!(parse_mdb_file(b"[]").unwrap().is_empty());
}

#[test]
fn rejects_bad_mdb_files() {
    assert!(file_error("").contains("empty; write []"));
    assert!(file_error("  \n").contains("empty"));
    assert!(file_error("[{").contains("mdb file is not valid"));
    assert!(file_error(r#"{"Hostname":"web1"}"#).contains("JSON array"));
    assert!(file_error("5").contains("JSON array"));
    let text = file_error(r#"[{"Hostname":"web1"},{"RequiredImage":"x"}]"#);
    assert!(
        text.contains("machine 2") && text.contains("Hostname is missing"),
        "{text}"
    );
    let text = file_error(r#"[{"Hostname":""}]"#);
    assert!(
        text.contains("machine 1") && text.contains("Hostname is empty"),
        "{text}"
    );
    let text = file_error(r#"[{"Hostname":"web1","RequiredImage":5}]"#);
    assert!(
        text.contains("machine 1: MDB record for web1: RequiredImage must be a string"),
        "{text}"
    );
    let text = file_error(r#"[{"Hostname":7}]"#);
    assert!(
        text.contains("machine 1: MDB record for a machine: Hostname must be a string"),
        "{text}"
    );
    let text = file_error(r#"[{"Hostname":"a b"}]"#);
    assert!(text.contains("invalid host \"a b\""), "{text}");
    let text = file_error(r#"[{"Hostname":"web1","RequiredImage":"a..b"}]"#);
    assert!(text.contains("web1: RequiredImage"), "{text}");
    let text = file_error(r#"[{"Hostname":"web1"},{"Hostname":"db1"},{"Hostname":"web1"}]"#);
    assert_eq!(text, "mdb file names web1 more than once");
}

#[test]
fn diff_sets_added_and_changed_machines_and_removes_the_gone_ones() {
    let web1 = MdbRecord::new("web1").requiring(name("image.1"));
    let web2 = MdbRecord::new("web2").requiring(name("image.1"));
    let db1 = MdbRecord::new("db1").requiring(name("db.1"));
    let mut web2_moved = web2.clone();
    web2_moved.required_image = Some(name("image.2"));
    let mut db1_tagged = db1.clone();
    db1_tagged.tags.insert("Role".into(), "db".into());
    let new_host = MdbRecord::new("app1");

    let old = [web1.clone(), web2.clone(), db1.clone()];
    let new = [db1_tagged.clone(), web2_moved.clone(), new_host.clone()];
    assert_eq!(
        diff_mdb(&old, &new),
        [
            MdbChange::Set(new_host),
            MdbChange::Set(db1_tagged),
            MdbChange::Remove("web1".into()),
            MdbChange::Set(web2_moved),
        ]
    );
    let hosts: Vec<_> = diff_mdb(&[], &old)
        .iter()
        .map(|c| c.host().to_string())
        .collect();
    assert_eq!(hosts, ["db1", "web1", "web2"]);
    assert!(diff_mdb(&old, &old).is_empty());
    let mut reordered = old.clone();
    reordered.reverse();
    assert!(diff_mdb(&old, &reordered).is_empty());
    assert_eq!(diff_mdb(&old, &[]).len(), 3);
}
