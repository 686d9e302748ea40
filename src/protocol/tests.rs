use super::*;

#[test]
fn subscribe_with_id_is_parsed() {
    assert_eq!(
        parse(r#"{"type":"subscribe","channel":"files","id":"7"}"#),
        Command::Subscribe {
            id: RequestId::parse(r#""7""#),
            channel: "files".into(),
            since: None,
        }
    );
}

#[test]
fn missing_or_falsy_channel_is_ignored() {
    for text in [
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","channel":""}"#,
        r#"{"type":"unsubscribe","channel":null}"#,
        r#"{"type":"subscribe","channel":0}"#,
        r#"{"type":"subscribe","channel":false}"#,
    ] {
        assert_eq!(parse(text), Command::MissingChannel, "{text}");
    }
}

#[test]
fn non_string_channel_is_refused() {
    assert_eq!(
        parse(r#"{"type":"subscribe","channel":5,"id":1}"#),
        Command::InvalidChannel {
            id: RequestId::parse(r#"1"#),
            problem: ChannelProblem::NotAString
        }
    );
    assert!(matches!(
        parse(r#"{"type":"subscribe","channel":{"a":1}}"#),
        Command::InvalidChannel { .. }
    ));
}

#[test]
fn channel_names_are_checked_at_the_boundary() {
    assert_eq!(check_channel_name(&"a".repeat(128)), Ok(()));
    assert_eq!(
        check_channel_name(&"a".repeat(129)),
        Err(ChannelProblem::TooLong)
    );
    assert_eq!(
        check_channel_name("a\nb"),
        Err(ChannelProblem::BadCharacter)
    );
    assert_eq!(
        check_channel_name("a\u{85}b"),
        Err(ChannelProblem::BadCharacter)
    );
    assert_eq!(check_channel_name("füles \"q\""), Ok(()));
    assert_eq!(check_channel_name("user:42/files@main#x"), Ok(()));
}

#[test]
fn null_and_garbage_are_malformed() {
    assert_eq!(parse("null"), Command::Malformed);
    assert_eq!(parse("{oops"), Command::Malformed);
    assert_eq!(parse(""), Command::Malformed);
}

#[test]
fn values_without_a_known_type_are_unknown() {
    assert_eq!(parse("5"), Command::Unknown { kind: None });
    assert_eq!(parse("[1,2]"), Command::Unknown { kind: None });
    assert_eq!(parse(r#"{"channel":"x"}"#), Command::Unknown { kind: None });
    assert_eq!(
        parse(r#"{"type":"event"}"#),
        Command::Unknown {
            kind: Some("event".into())
        }
    );
    assert_eq!(
        parse(r#"{"type":7}"#),
        Command::Unknown {
            kind: Some("7".into())
        }
    );
}

#[test]
fn proto_keys_are_plain_data() {
    assert_eq!(
        parse(r#"{"__proto__":{"type":"subscribe"},"type":"request","id":"1"}"#),
        Command::Call(Call {
            kind: CallKind::Request,
            id: RequestId::parse(r#""1""#),
            name: None,
            data: None,
        })
    );
}

#[test]
fn calls_name_their_handler_by_channel_or_handler_and_keep_data_raw() {
    let Command::Call(invoke) =
        parse(r#"{"type":"invoke","id":4,"channel":"search","data":{"q":"x","n":[1,2]}}"#)
    else {
        panic!("not a call");
    };
    assert_eq!(invoke.kind, CallKind::Invoke);
    assert_eq!(invoke.name.as_deref(), Some("search"));
    assert_eq!(invoke.data.as_deref(), Some(r#"{"q":"x","n":[1,2]}"#));
    assert!(invoke.answered());
    let Command::Call(request) = parse(r#"{"type":"request","handler":"h","channel":"c"}"#) else {
        panic!("not a call");
    };
    assert_eq!(request.name.as_deref(), Some("h"));
    assert!(
        request.answered(),
        "a request without an id is still answered"
    );
    let Command::Call(send) = parse(r#"{"type":"send","channel":"log","id":1}"#) else {
        panic!("not a call");
    };
    assert!(!send.answered());
    let Command::Call(no_id) = parse(r#"{"type":"invoke","channel":"x"}"#) else {
        panic!("not a call");
    };
    assert!(!no_id.answered(), "an invoke without an id is a send");
    for nameless in [
        r#"{"type":"invoke","id":1}"#,
        r#"{"type":"invoke","id":1,"channel":5}"#,
        r#"{"type":"invoke","id":1,"channel":""}"#,
    ] {
        let Command::Call(call) = parse(nameless) else {
            panic!("not a call: {nameless}");
        };
        assert_eq!(call.name, None, "{nameless}");
    }
}

#[test]
fn a_subscribe_carries_its_since_and_a_bad_one_is_refused() {
    assert_eq!(
        parse(r#"{"type":"subscribe","channel":"f","since":{"epoch":"e","seq":3}}"#),
        Command::Subscribe {
            id: None,
            channel: "f".into(),
            since: Some(Since {
                epoch: "e".into(),
                seq: 3
            }),
        }
    );
    assert_eq!(
        parse(r#"{"type":"subscribe","channel":"f","id":"s","since":{"seq":3}}"#),
        Command::InvalidSince {
            id: RequestId::parse(r#""s""#)
        }
    );
}

#[test]
fn responses_match_the_original_bytes() {
    assert_eq!(
        welcome("conn-1-abc", Some("/tmp")),
        r#"{"type":"response","data":{"status":"connected","connectionId":"conn-1-abc","cwd":"/tmp"}}"#
    );
    assert_eq!(
        welcome("conn-1-abc", None),
        r#"{"type":"response","data":{"status":"connected","connectionId":"conn-1-abc"}}"#
    );
    assert_eq!(
        subscribed(RequestId::parse(r#""7""#).as_ref(), "files"),
        r#"{"type":"response","id":"7","data":{"status":"subscribed","channel":"files"}}"#
    );
    assert_eq!(
        unsubscribed(None, "files"),
        r#"{"type":"response","data":{"status":"unsubscribed","channel":"files"}}"#
    );
    assert_eq!(
        no_handler(RequestId::parse(r#""9""#).as_ref()),
        r#"{"type":"response","id":"9","data":{"error":"No handler for request type"}}"#
    );
    assert_eq!(
        parse_error(),
        r#"{"type":"response","data":{"error":"Failed to parse message"}}"#
    );
    assert_eq!(
        error(
            RequestId::parse(r#"3"#).as_ref(),
            "Too many",
            "SUBSCRIPTION_LIMIT"
        ),
        r#"{"type":"response","id":3,"data":{"error":"Too many","code":"SUBSCRIPTION_LIMIT"}}"#
    );
    assert_eq!(pong(None), r#"{"type":"pong"}"#);
}

#[test]
fn call_answers_have_the_web_client_and_the_original_shapes() {
    let id = RequestId::parse("7");
    assert_eq!(
        call_result(id.as_ref(), Some(r#"{"ok":true}"#)),
        r#"{"type":"response","id":7,"data":{"ok":true}}"#
    );
    assert_eq!(
        call_result(RequestId::parse(r#""a""#).as_ref(), None),
        r#"{"type":"response","id":"a"}"#
    );
    assert_eq!(
        call_failed(id.as_ref(), "bad \"x\"", "HANDLER_ERROR"),
        r#"{"type":"response","id":7,"error":"bad \"x\"","data":{"error":"bad \"x\"","code":"HANDLER_ERROR"}}"#
    );
    assert_eq!(
        subscribed_at(None, "files", Some("e1"), 57, Some(true)),
        r#"{"type":"response","data":{"status":"subscribed","channel":"files","epoch":"e1","seq":57,"recovered":true}}"#
    );
    assert_eq!(
        subscribed_at(None, "files", None, 0, Some(false)),
        r#"{"type":"response","data":{"status":"subscribed","channel":"files","recovered":false}}"#
    );
}

#[test]
fn ids_are_echoed_as_javascript_would_print_them() {
    let id = parse(r#"{"type":"request","id":1.0}"#);
    let Command::Call(Call { id, .. }) = id else {
        panic!("not a request")
    };
    assert_eq!(
        no_handler(id.as_ref()),
        r#"{"type":"response","id":1,"data":{"error":"No handler for request type"}}"#
    );
    let big = RequestId::parse("1e21");
    assert!(no_handler(big.as_ref()).contains(r#""id":1e+21"#));
    let null = RequestId::parse("null");
    assert!(no_handler(null.as_ref()).contains(r#""id":null"#));
    let nested = RequestId::parse(r#"{"b":1,"a":[true,"x"],"2":0,"10":1,"01":2}"#);
    assert!(
        no_handler(nested.as_ref()).contains(r#""id":{"2":0,"10":1,"b":1,"a":[true,"x"],"01":2}"#)
    );
    let infinite = RequestId::parse("1e400");
    assert!(no_handler(infinite.as_ref()).contains(r#""id":null"#));
}
