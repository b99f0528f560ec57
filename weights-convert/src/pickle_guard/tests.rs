//! The allow-list refuses what a state dict never needs and lets through what it does.

use super::*;

#[test]
fn refuses_os_system_via_global() {
    // protocol 2: c posix\nsystem\n (S'echo hi'\n tR.
    let p = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
    match check_pickle(p, 0) {
        Err(GuardError::ForbiddenGlobal { global, .. }) => assert_eq!(global, "posix.system"),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn refuses_stack_global_through_memo() {
    // protocol 4: strings memoised, popped, fetched back, then STACK_GLOBAL.
    let mut p = vec![0x80, 4];
    p.extend([0x8c, 8]);
    p.extend(b"builtins");
    p.push(0x94); // memo 0
    p.extend([0x8c, 4]);
    p.extend(b"eval");
    p.push(0x94); // memo 1
    p.extend(b"00"); // pop both
    p.extend([b'h', 0, b'h', 1, 0x93, b'.']);
    match check_pickle(&p, 0) {
        Err(GuardError::ForbiddenGlobal { global, .. }) => assert_eq!(global, "builtins.eval"),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn accepts_ordered_dict_and_reports_it() {
    let p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.";
    let s = check_pickle(p, 0).unwrap();
    assert_eq!(s.globals, vec!["collections.OrderedDict".to_string()]);
    assert_eq!(s.end, p.len());
    assert!(!s.is_legacy_magic);
}

#[test]
fn refuses_inst_and_unknown_opcodes() {
    let p = b"(ios\nsystem\nS'x'\n.";
    assert!(matches!(check_pickle(p, 0), Err(GuardError::ForbiddenOpcode { name: "INST", .. })));
    assert!(matches!(check_pickle(b"\xff", 0), Err(GuardError::Malformed { .. })));
    assert!(matches!(check_pickle(b"\x80\x02", 0), Err(GuardError::Truncated { .. })));
}

#[test]
fn recognises_the_legacy_magic_number() {
    let mut p = vec![0x80, 2, 0x8a, 10];
    p.extend(LEGACY_MAGIC_LE);
    p.push(b'.');
    assert!(check_pickle(&p, 0).unwrap().is_legacy_magic);
}
