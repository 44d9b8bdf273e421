//! Table tests of the condition rules of `reflector.md` §2.1.

use super::*;

const INTERVAL: Duration = Duration::from_secs(60);
const READY_MSG: &str = "all good";

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

/// `(type, status, reason, message)` of each condition, in list order.
fn shape(list: &[Condition]) -> Vec<(String, String, String, String)> {
    list.iter()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            )
        })
        .collect()
}

fn c4(t: &str, s: &str, r: &str, m: &str) -> (String, String, String, String) {
    (t.into(), s.into(), r.into(), m.into())
}

#[test]
fn set_stamps_generation_and_keeps_transition_time_when_state_is_unchanged() {
    let mut list = Vec::new();
    Conditions::at(&mut list, 1, t(0)).mark_true(READY, "R", "m");
    assert_eq!(list[0].observed_generation, Some(1));
    assert_eq!(list[0].last_transition_time, t(0));

    // Same state, new generation: generation moves, time stays.
    Conditions::at(&mut list, 2, t(10)).mark_true(READY, "R", "m");
    assert_eq!(list[0].observed_generation, Some(2));
    assert_eq!(list[0].last_transition_time, t(0));

    // Same state, same generation: untouched.
    Conditions::at(&mut list, 2, t(20)).mark_true(READY, "R", "m");
    assert_eq!(list[0].last_transition_time, t(0));

    // A change of status, reason or message each moves the time.
    for (i, (s, r, m)) in [(FALSE, "R", "m"), (FALSE, "R2", "m"), (FALSE, "R2", "m2")]
        .into_iter()
        .enumerate()
    {
        let at = t(100 + i as i64);
        Conditions::at(&mut list, 2, at.clone()).set(READY, s, r, m);
        assert_eq!(list[0].last_transition_time, at);
    }
}

#[test]
fn set_truncates_long_messages() {
    let mut list = Vec::new();
    let long = "x".repeat(MAX_CONDITION_MESSAGE_LEN + 10);
    Conditions::at(&mut list, 1, t(0)).mark_false(READY, "R", &long);
    assert_eq!(list[0].message.len(), MAX_CONDITION_MESSAGE_LEN);
    assert!(list[0].message.ends_with("x..."));
    let exact = "y".repeat(MAX_CONDITION_MESSAGE_LEN);
    Conditions::at(&mut list, 1, t(0)).mark_false(READY, "R", &exact);
    assert_eq!(list[0].message, exact);
    // Never splits a character.
    assert_eq!(trim_message("ééé", 6), "ééé");
    assert_eq!(trim_message("éééé", 6), "é...");
    assert_eq!(trim_message("abééé", 6), "ab...");
    assert_eq!(trim_message("abcdef", 2), "...");
}

#[test]
fn set_orders_stalled_reconciling_ready_then_others() {
    let mut list = Vec::new();
    {
        let mut c = Conditions::at(&mut list, 1, t(0));
        c.mark_true("Zeta", "R", "");
        c.mark_true("Alpha", "R", "");
        c.mark_true(READY, "R", "");
    }
    Conditions::at(&mut list, 2, t(0)).mark_true("Beta", "R", "");
    {
        let mut c = Conditions::at(&mut list, 1, t(0));
        c.mark_true(RECONCILING, "R", "");
        c.mark_true(STALLED, "R", "");
    }
    let types: Vec<&str> = list.iter().map(|c| c.type_.as_str()).collect();
    // Others: newest generation first, then by type.
    assert_eq!(
        types,
        [STALLED, RECONCILING, READY, "Beta", "Alpha", "Zeta"]
    );
}

#[test]
fn predicates() {
    struct Case {
        conds: &'static [(&'static str, &'static str)],
        ready: bool,
        stalled: bool,
        reconciling: bool,
        ready_unknown: bool,
    }
    let cases = [
        Case {
            conds: &[],
            ready: false,
            stalled: false,
            reconciling: false,
            ready_unknown: true,
        },
        Case {
            conds: &[(READY, TRUE)],
            ready: true,
            stalled: false,
            reconciling: false,
            ready_unknown: false,
        },
        Case {
            conds: &[(READY, UNKNOWN)],
            ready: false,
            stalled: false,
            reconciling: false,
            ready_unknown: true,
        },
        Case {
            conds: &[(READY, TRUE), (RECONCILING, TRUE)],
            ready: false,
            stalled: false,
            reconciling: true,
            ready_unknown: false,
        },
        Case {
            conds: &[(READY, TRUE), (STALLED, TRUE)],
            ready: false,
            stalled: true,
            reconciling: false,
            ready_unknown: false,
        },
        // Both negative-polarity conditions True: neither stalled nor reconciling, so Ready counts.
        Case {
            conds: &[(READY, TRUE), (STALLED, TRUE), (RECONCILING, TRUE)],
            ready: true,
            stalled: false,
            reconciling: false,
            ready_unknown: false,
        },
        Case {
            conds: &[(READY, TRUE), (STALLED, FALSE), (RECONCILING, FALSE)],
            ready: true,
            stalled: false,
            reconciling: false,
            ready_unknown: false,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut list = Vec::new();
        let mut c = Conditions::at(&mut list, 1, t(0));
        for (ty, st) in case.conds {
            c.set(ty, st, "R", "m");
        }
        assert_eq!(is_ready(&list), case.ready, "case {i} ready");
        assert_eq!(is_stalled(&list), case.stalled, "case {i} stalled");
        assert_eq!(
            is_reconciling(&list),
            case.reconciling,
            "case {i} reconciling"
        );
        assert_eq!(
            is_unknown(&list, READY),
            case.ready_unknown,
            "case {i} unknown"
        );
    }
}

#[test]
fn mark_stalled_and_reconciling_exclude_each_other() {
    let mut list = Vec::new();
    let mut c = Conditions::at(&mut list, 1, t(0));
    c.mark_reconciling("Progressing", "working");
    c.mark_stalled("Broken", "cannot");
    assert_eq!(shape(c.list()), vec![c4(STALLED, TRUE, "Broken", "cannot")]);
    c.mark_reconciling("Progressing", "again");
    assert_eq!(
        shape(c.list()),
        vec![c4(RECONCILING, TRUE, "Progressing", "again")]
    );
}

#[test]
fn progressive_status_touches_ready_only_when_unknown_absent_or_drift() {
    type Case = (
        &'static [(&'static str, &'static str, &'static str)],
        bool,
        Vec<(String, String, String, String)>,
    );
    let cases: Vec<Case> = vec![
        // Ready absent ⇒ Ready=Unknown with the progress reason/message.
        (
            &[],
            false,
            vec![
                c4(RECONCILING, TRUE, "P", "msg"),
                c4(READY, UNKNOWN, "P", "msg"),
            ],
        ),
        // Ready=True, no drift ⇒ left alone.
        (
            &[(READY, TRUE, "Succeeded")],
            false,
            vec![
                c4(RECONCILING, TRUE, "P", "msg"),
                c4(READY, TRUE, "Succeeded", "m"),
            ],
        ),
        // Ready=False, no drift ⇒ left alone.
        (
            &[(READY, FALSE, "Failed")],
            false,
            vec![
                c4(RECONCILING, TRUE, "P", "msg"),
                c4(READY, FALSE, "Failed", "m"),
            ],
        ),
        // Ready=True with drift ⇒ Unknown.
        (
            &[(READY, TRUE, "Succeeded")],
            true,
            vec![
                c4(RECONCILING, TRUE, "P", "msg"),
                c4(READY, UNKNOWN, "P", "msg"),
            ],
        ),
        // Stalled is removed.
        (
            &[(STALLED, TRUE, "X"), (READY, FALSE, "X")],
            false,
            vec![
                c4(RECONCILING, TRUE, "P", "msg"),
                c4(READY, FALSE, "X", "m"),
            ],
        ),
    ];
    for (i, (before, drift, want)) in cases.into_iter().enumerate() {
        let mut list = Vec::new();
        let mut c = Conditions::at(&mut list, 1, t(0));
        for (ty, st, r) in before {
            c.set(ty, st, r, "m");
        }
        progressive_status(&mut c, drift, "P", "msg");
        assert_eq!(shape(c.list()), want, "case {i}");
    }
}

#[test]
fn mark_retrying_changes_only_the_reason() {
    let mut list = Vec::new();
    let mut c = Conditions::at(&mut list, 1, t(0));
    c.mark_retrying();
    assert!(c.list().is_empty());
    c.mark_reconciling("Progressing", "scanning: first scan");
    c.mark_false(READY, "ReadOperationFailed", "scan failed: boom");
    c.mark_retrying();
    assert_eq!(
        shape(c.list()),
        vec![
            c4(
                RECONCILING,
                TRUE,
                PROGRESSING_WITH_RETRY_REASON,
                "scanning: first scan"
            ),
            c4(READY, FALSE, "ReadOperationFailed", "scan failed: boom"),
        ]
    );
}

/// Which `isSuccess` a case uses.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Success ⇔ no error and `RequeueAfter == interval` (both image controllers).
    WithRequeue,
    /// Success ⇔ no error and zero result.
    NoRequeue,
}

struct FinalizeCase {
    name: &'static str,
    kind: Kind,
    before: &'static [(&'static str, &'static str, &'static str, &'static str)],
    result: ReconcileResult,
    error: Option<&'static str>,
    annotation: Option<&'static str>,
    want: &'static [(&'static str, &'static str, &'static str, &'static str)],
    want_error: Option<&'static str>,
}

const OK: ReconcileResult = ReconcileResult {
    requeue: false,
    requeue_after: INTERVAL,
};
const ZERO: ReconcileResult = ReconcileResult {
    requeue: false,
    requeue_after: Duration::ZERO,
};
const REQUEUE: ReconcileResult = ReconcileResult {
    requeue: true,
    requeue_after: Duration::ZERO,
};
const OTHER_AFTER: ReconcileResult = ReconcileResult {
    requeue: false,
    requeue_after: Duration::from_secs(5),
};

fn finalize_cases() -> Vec<FinalizeCase> {
    use Kind::*;
    vec![
        FinalizeCase {
            name: "error removes Stalled and sets Ready=False Failed",
            kind: WithRequeue,
            before: &[(STALLED, TRUE, "X", "x")],
            result: ZERO,
            error: Some("boom"),
            annotation: None,
            want: &[(READY, FALSE, FAILED_REASON, "boom")],
            want_error: Some("boom"),
        },
        FinalizeCase {
            name: "error with both Stalled and Reconciling keeps Reconciling",
            kind: WithRequeue,
            before: &[(RECONCILING, TRUE, "P", "p"), (STALLED, TRUE, "X", "x")],
            result: ZERO,
            error: Some("boom"),
            annotation: None,
            want: &[
                (RECONCILING, TRUE, "P", "p"),
                (READY, FALSE, FAILED_REASON, "boom"),
            ],
            want_error: Some("boom"),
        },
        FinalizeCase {
            name: "error keeps a specific Ready=False",
            kind: WithRequeue,
            before: &[
                (RECONCILING, TRUE, "P", "p"),
                (READY, FALSE, "AuthenticationFailed", "no creds"),
            ],
            result: ZERO,
            error: Some("boom"),
            annotation: None,
            want: &[
                (RECONCILING, TRUE, "P", "p"),
                (READY, FALSE, "AuthenticationFailed", "no creds"),
            ],
            want_error: Some("boom"),
        },
        FinalizeCase {
            name: "error overwrites Ready=True",
            kind: WithRequeue,
            before: &[
                (RECONCILING, TRUE, "P", "p"),
                (READY, TRUE, SUCCEEDED_REASON, "old"),
            ],
            result: ZERO,
            error: Some("boom"),
            annotation: None,
            want: &[
                (RECONCILING, TRUE, "P", "p"),
                (READY, FALSE, FAILED_REASON, "boom"),
            ],
            want_error: Some("boom"),
        },
        FinalizeCase {
            name: "error overwrites Ready=Unknown",
            kind: WithRequeue,
            before: &[(RECONCILING, TRUE, "P", "p"), (READY, UNKNOWN, "P", "p")],
            result: ZERO,
            error: Some("boom"),
            annotation: None,
            want: &[
                (RECONCILING, TRUE, "P", "p"),
                (READY, FALSE, FAILED_REASON, "boom"),
            ],
            want_error: Some("boom"),
        },
        FinalizeCase {
            name: "stalled with Ready absent mirrors Stalled into Ready and drops Reconciling",
            kind: WithRequeue,
            before: &[
                (RECONCILING, TRUE, "P", "p"),
                (STALLED, TRUE, "ImageURLInvalid", "bad url"),
            ],
            result: ZERO,
            error: None,
            annotation: None,
            want: &[
                (STALLED, TRUE, "ImageURLInvalid", "bad url"),
                (READY, FALSE, "ImageURLInvalid", "bad url"),
            ],
            want_error: None,
        },
        FinalizeCase {
            name: "stalled overwrites Ready=True",
            kind: WithRequeue,
            before: &[
                (STALLED, TRUE, "InvalidPolicy", "bad"),
                (READY, TRUE, SUCCEEDED_REASON, "old"),
            ],
            result: ZERO,
            error: None,
            annotation: None,
            want: &[
                (STALLED, TRUE, "InvalidPolicy", "bad"),
                (READY, FALSE, "InvalidPolicy", "bad"),
            ],
            want_error: None,
        },
        FinalizeCase {
            name: "stalled keeps an existing Ready=False reason",
            kind: WithRequeue,
            before: &[
                (STALLED, TRUE, "InvalidPolicy", "bad"),
                (READY, FALSE, "DependencyNotReady", "old"),
            ],
            result: ZERO,
            error: None,
            annotation: None,
            want: &[
                (STALLED, TRUE, "InvalidPolicy", "bad"),
                (READY, FALSE, "DependencyNotReady", "old"),
            ],
            want_error: None,
        },
        FinalizeCase {
            name: "requeue request is not stalled",
            kind: WithRequeue,
            before: &[(STALLED, TRUE, "X", "x"), (READY, FALSE, "Y", "y")],
            result: REQUEUE,
            error: None,
            annotation: None,
            want: &[(READY, FALSE, "Y", "y")],
            want_error: None,
        },
        FinalizeCase {
            name: "arbitrary requeueAfter is not stalled",
            kind: WithRequeue,
            before: &[(STALLED, TRUE, "X", "x"), (READY, FALSE, "Y", "y")],
            result: OTHER_AFTER,
            error: None,
            annotation: None,
            want: &[(READY, FALSE, "Y", "y")],
            want_error: None,
        },
        FinalizeCase {
            name: "dependency wait: Ready=False kept, Reconciling kept, no error",
            kind: WithRequeue,
            before: &[
                (RECONCILING, TRUE, "Progressing", "p"),
                (READY, FALSE, "DependencyNotReady", "no tags"),
            ],
            result: OTHER_AFTER,
            error: None,
            annotation: None,
            want: &[
                (RECONCILING, TRUE, "Progressing", "p"),
                (READY, FALSE, "DependencyNotReady", "no tags"),
            ],
            want_error: None,
        },
        FinalizeCase {
            name: "success removes Reconciling and sets Ready=True",
            kind: WithRequeue,
            before: &[
                (RECONCILING, TRUE, "Progressing", "p"),
                (READY, UNKNOWN, "Progressing", "p"),
            ],
            result: OK,
            error: None,
            annotation: None,
            want: &[(READY, TRUE, SUCCEEDED_REASON, READY_MSG)],
            want_error: None,
        },
        FinalizeCase {
            name: "success with no conditions sets Ready=True",
            kind: WithRequeue,
            before: &[],
            result: OK,
            error: None,
            annotation: None,
            want: &[(READY, TRUE, SUCCEEDED_REASON, READY_MSG)],
            want_error: None,
        },
        FinalizeCase {
            name: "success keeps an existing Ready=True message",
            kind: WithRequeue,
            before: &[(READY, TRUE, SUCCEEDED_REASON, "earlier message")],
            result: OK,
            error: None,
            annotation: None,
            want: &[(READY, TRUE, SUCCEEDED_REASON, "earlier message")],
            want_error: None,
        },
        FinalizeCase {
            name: "success but Ready=False becomes an error",
            kind: WithRequeue,
            before: &[(READY, FALSE, FAILED_REASON, "fail-msg")],
            result: OK,
            error: None,
            annotation: None,
            want: &[(READY, FALSE, FAILED_REASON, "fail-msg")],
            want_error: Some("fail-msg"),
        },
        FinalizeCase {
            name: "annotation is recorded",
            kind: WithRequeue,
            before: &[],
            result: OK,
            error: None,
            annotation: Some("2024-01-01T00:00:00Z"),
            want: &[(READY, TRUE, SUCCEEDED_REASON, READY_MSG)],
            want_error: None,
        },
        FinalizeCase {
            name: "annotation is recorded on failure too",
            kind: WithRequeue,
            before: &[],
            result: ZERO,
            error: Some("boom"),
            annotation: Some("now"),
            want: &[(READY, FALSE, FAILED_REASON, "boom")],
            want_error: Some("boom"),
        },
        FinalizeCase {
            name: "no-requeue reconciler: zero result is success",
            kind: NoRequeue,
            before: &[(RECONCILING, TRUE, "P", "p")],
            result: ZERO,
            error: None,
            annotation: None,
            want: &[(READY, TRUE, SUCCEEDED_REASON, READY_MSG)],
            want_error: None,
        },
        FinalizeCase {
            name: "no-requeue reconciler: stalled mirrors into Ready",
            kind: NoRequeue,
            before: &[(STALLED, TRUE, "X", "x")],
            result: ZERO,
            error: None,
            annotation: None,
            want: &[(STALLED, TRUE, "X", "x"), (READY, FALSE, "X", "x")],
            want_error: None,
        },
        FinalizeCase {
            name: "no-requeue reconciler: Ready=False is not turned into an error",
            kind: NoRequeue,
            before: &[(READY, FALSE, "Y", "y")],
            result: ZERO,
            error: None,
            annotation: None,
            want: &[(READY, FALSE, "Y", "y")],
            want_error: None,
        },
        FinalizeCase {
            name: "no-requeue reconciler: requeue drops Stalled, keeps Reconciling",
            kind: NoRequeue,
            before: &[(RECONCILING, TRUE, "P", "p")],
            result: REQUEUE,
            error: None,
            annotation: None,
            want: &[(RECONCILING, TRUE, "P", "p")],
            want_error: None,
        },
    ]
}

#[test]
fn result_finalizer_table() {
    for case in finalize_cases() {
        let with_requeue =
            |r: &ReconcileResult, err: bool| !err && !r.requeue && r.requeue_after == INTERVAL;
        let no_requeue = |r: &ReconcileResult, err: bool| !err && r.is_zero();
        let mut list = Vec::new();
        let mut c = Conditions::at(&mut list, 3, t(0));
        for (ty, st, r, m) in case.before {
            c.set(ty, st, r, m);
        }
        let mut last_handled = Some("previous".to_string());
        let err = case.error.map(|e| e.to_string());
        let got = match case.kind {
            Kind::WithRequeue => ResultFinalizer::new(with_requeue, READY_MSG).finalize(
                &mut c,
                &case.result,
                err,
                case.annotation,
                &mut last_handled,
            ),
            Kind::NoRequeue => ResultFinalizer::new(no_requeue, READY_MSG).finalize(
                &mut c,
                &case.result,
                err,
                case.annotation,
                &mut last_handled,
            ),
        };
        let want: Vec<_> = case
            .want
            .iter()
            .map(|(a, b, r, m)| c4(a, b, r, m))
            .collect();
        assert_eq!(shape(c.list()), want, "{} ({:?})", case.name, case.kind);
        assert_eq!(
            got.err().map(|e| e.to_string()),
            case.want_error.map(str::to_string),
            "{}: error",
            case.name
        );
        assert_eq!(
            last_handled.as_deref(),
            Some(case.annotation.unwrap_or("previous")),
            "{}: lastHandledReconcileAt",
            case.name
        );
        assert!(list.iter().all(|c| c.observed_generation == Some(3)));
    }
}
