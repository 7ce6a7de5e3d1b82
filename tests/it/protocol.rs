//! The original JSON WebSocket protocol (spec §7), told from the clients' side.

use std::time::Duration;

use coedit::api::{ClientMessage, ServerMessage};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;

#[tokio::test]
async fn an_empty_room_greets_with_users_only_and_a_written_one_with_sync_first() {
    let server = TestServer::start().await;
    let (_first, greeting) = server.connect("greet", "first").await;
    assert_eq!(greeting, vec![ServerMessage::Users { users: vec![] }]);

    let mut alice = server.join("greet", "alice", "Alice").await;
    alice.type_text(0, "hello").await;

    let (_bob, greeting) = server.connect("greet", "bob").await;
    assert_eq!(greeting.len(), 2, "{greeting:?}");
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("sync must come first: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "hello");
    let ServerMessage::Users { users } = &greeting[1] else {
        panic!("users must follow: {greeting:?}");
    };
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].id.as_str(), users[0].name.as_str()),
        ("alice", "Alice")
    );
}

#[tokio::test]
async fn join_lists_the_others_to_the_joiner_and_announces_the_joiner_to_them() {
    let server = TestServer::start().await;
    let mut alice = server.join("presence", "alice", "Alice").await;
    alice
        .send(&ClientMessage::Cursor {
            user_id: Some("alice".into()),
            name: Some("Alice".into()),
            color: Some("#3B82F6".into()),
            position: Some(7),
        })
        .await;

    let (mut bob, _) = server.connect("presence", "bob").await;
    bob.send_raw(Message::text(
        r##"{"type":"join","name":"Bob","color":"#EF4444"}"##,
    ))
    .await;
    let list = bob.recv_value().await;
    assert_eq!(
        list,
        json!({"type":"users_list","users":[
            {"id":"alice","name":"Alice","color":"#3B82F6","cursorPosition":7,"simulated":false}
        ]})
    );
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"user_joined","userId":"bob","name":"Bob","color":"#EF4444"})
    );
}

#[tokio::test]
async fn updates_reach_the_others_but_not_the_sender() {
    let server = TestServer::start().await;
    let mut alice = server.join("relay", "alice", "Alice").await;
    let mut bob = server.join("relay", "bob", "Bob").await;
    let _ = alice.recv().await; // bob's user_joined

    alice.type_text(0, "hi").await;
    let update = bob.recv_value().await;
    assert_eq!(update["type"], "update");
    assert_eq!(update["from"], "alice");
    bob.apply_hex(update["data"].as_str().unwrap());
    assert_eq!(bob.content(), "hi");
    alice.expect_silence().await;
}

#[tokio::test]
async fn sync_request_answers_with_the_merged_document() {
    let server = TestServer::start().await;
    let mut alice = server.join("sync", "alice", "Alice").await;
    alice.type_text(0, "merged").await;
    alice.send(&ClientMessage::SyncRequest).await;
    let ServerMessage::Sync { data } = alice.recv().await else {
        panic!("expected sync");
    };
    assert_eq!(text_of_hex_state(&data), "merged");
}

#[tokio::test]
async fn cursor_selection_and_awareness_are_relayed_under_the_senders_id() {
    let server = TestServer::start().await;
    let mut alice = server.join("cursors", "alice", "Alice").await;
    let mut bob = server.join("cursors", "bob", "Bob").await;
    let _ = alice.recv().await;

    // A client cannot speak for someone else: the relayed userId is the sender's.
    alice
        .send_raw(Message::text(
            r##"{"type":"cursor","userId":"mallory","name":"Alice","color":"#3B82F6","position":3}"##,
        ))
        .await;
    assert_eq!(
        bob.recv_value().await,
        json!({"type":"cursor","userId":"alice","name":"Alice","color":"#3B82F6","position":3})
    );

    alice
        .send_raw(Message::text(
            r#"{"type":"selection","selection":{"start":1,"end":4}}"#,
        ))
        .await;
    assert_eq!(
        bob.recv_value().await,
        json!({"type":"selection","userId":"alice","selection":{"start":1,"end":4}})
    );

    alice
        .send_raw(Message::text(
            r#"{"type":"awareness","state":{"typing":true}}"#,
        ))
        .await;
    assert_eq!(
        bob.recv_value().await,
        json!({"type":"awareness","userId":"alice","state":{"typing":true}})
    );
    alice.expect_silence().await;

    let (status, users) = server.get("/rooms/cursors/users").await;
    assert_eq!(status, 200);
    assert_eq!(users[0]["cursor_position"], 3);
    assert_eq!(users[0]["selection"], json!({"start":1,"end":4}));
}

#[tokio::test]
async fn ping_is_answered_with_pong_carrying_the_timestamp() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.connect("ping", "alice").await;
    alice
        .send_raw(Message::text(
            r#"{"type":"ping","timestamp":1703592000000}"#,
        ))
        .await;
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"pong","timestamp":1703592000000u64})
    );
}

#[tokio::test]
async fn invalid_json_and_unknown_types_get_an_error_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.connect("errors", "alice").await;

    alice.send_raw(Message::text("{not json")).await;
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"error","message":"Invalid JSON"})
    );
    alice.send_raw(Message::text(r#"{"type":"dance"}"#)).await;
    let error = alice.recv().await;
    assert_eq!(
        error,
        ServerMessage::Error {
            message: "Unknown message type: dance".into()
        }
    );
    alice
        .send_raw(Message::text(r#"{"type":"ping","timestamp":1}"#))
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Pong { .. }));

    let (_, metrics) = server.get("/metrics").await;
    assert!(metrics["error_count"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn malformed_updates_are_refused_and_leave_the_room_untouched() {
    let server = TestServer::start().await;
    let mut alice = server.join("malformed", "alice", "Alice").await;
    let mut bob = server.join("malformed", "bob", "Bob").await;
    let _ = alice.recv().await;
    alice.type_text(0, "intact").await;
    let update = bob.recv().await;
    bob.apply_if_document(&update);

    for data in [
        "zz-not-hex",
        "abc",
        "ffffffffffffffffffff",
        "0101c8f1e00c00040107636f6e74656e7401ff",
    ] {
        alice
            .send(&ClientMessage::Update { data: data.into() })
            .await;
        let ServerMessage::Error { message } = alice.recv().await else {
            panic!("{data} must be answered with an error");
        };
        assert!(!message.is_empty());
    }
    // Binary frames are raw updates, refused the same way.
    alice
        .send_raw(Message::binary(vec![0xff, 0x01, 0x02]))
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Error { .. }));
    bob.expect_silence().await;

    alice.send(&ClientMessage::SyncRequest).await;
    let ServerMessage::Sync { data } = alice.recv().await else {
        panic!("expected sync");
    };
    assert_eq!(text_of_hex_state(&data), "intact");
    // And the room still takes good updates.
    alice.type_text(6, "!").await;
    let update = bob.recv().await;
    bob.apply_if_document(&update);
    assert_eq!(bob.content(), "intact!");
}

#[tokio::test]
async fn binary_frames_are_raw_updates_relayed_as_binary() {
    let server = TestServer::start().await;
    let mut alice = server.join("binary", "alice", "Alice").await;
    let mut bob = server.join("binary", "bob", "Bob").await;
    let _ = alice.recv().await;

    use yrs::{ReadTxn, StateVector, Text, Transact};
    alice.text.insert(&mut alice.doc.transact_mut(), 0, "raw");
    let state = alice
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    alice.send_raw(Message::binary(state)).await;
    match bob.next_frame(EXPECT).await {
        Some(Message::Binary(bytes)) => bob.apply_bytes(&bytes),
        other => panic!("expected a binary update, got {other:?}"),
    }
    assert_eq!(bob.content(), "raw");
}

#[tokio::test]
async fn user_left_is_sent_when_a_user_disconnects() {
    let server = TestServer::start().await;
    let mut alice = server.join("leave", "alice", "Alice").await;
    let bob = server.join("leave", "bob", "Bob").await;
    let _ = alice.recv().await;
    bob.close().await;
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"user_left","userId":"bob"})
    );
}

#[tokio::test]
async fn two_sockets_with_one_client_id_are_one_user_and_neither_is_closed() {
    let server = TestServer::start().await;
    let mut alice = server.join("twins", "alice", "Alice").await;
    // The original page under React StrictMode: two sockets, one client id.
    let mut page_a = server.join("twins", "page", "Pat").await;
    let _ = alice.recv().await; // user_joined for Pat
    let mut page_b = server.join("twins", "page", "Pat").await;
    alice.expect_silence().await; // Pat did not join twice

    let (_, users) = server.get("/rooms/twins/users").await;
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");

    // A broadcast from one of Pat's sockets skips both of them.
    page_a.type_text(0, "from pat").await;
    let update = alice.recv().await;
    assert!(matches!(update, ServerMessage::Update { ref from, .. } if from == "page"));
    page_b.expect_silence().await;
    page_a.expect_silence().await;

    // Both are still open: each can still talk.
    for page in [&mut page_a, &mut page_b] {
        page.send_raw(Message::text(r#"{"type":"ping","timestamp":2}"#))
            .await;
        assert!(matches!(page.recv().await, ServerMessage::Pong { .. }));
    }

    // Pat leaves only when the last socket closes.
    page_a.close().await;
    alice.expect_silence().await;
    page_b.close().await;
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"user_left","userId":"page"})
    );
}

#[tokio::test]
async fn two_editors_typing_at_once_converge_and_a_late_joiner_gets_both_texts() {
    let server = TestServer::start().await;
    let mut alice = server.join("concurrent", "alice", "Alice").await;
    let mut bob = server.join("concurrent", "bob", "Bob").await;
    let _ = alice.recv().await;

    // Both type before seeing each other's keystrokes.
    for (index, ch) in "alice".chars().enumerate() {
        alice.type_text(index as u32, &ch.to_string()).await;
    }
    for (index, ch) in "BOB".chars().enumerate() {
        bob.type_text(index as u32, &ch.to_string()).await;
    }
    for _ in 0..5 {
        let update = bob.recv().await;
        bob.apply_if_document(&update);
    }
    for _ in 0..3 {
        let update = alice.recv().await;
        alice.apply_if_document(&update);
    }
    assert_eq!(alice.content(), bob.content());
    let merged = alice.content();
    assert!(
        merged.contains("alice") && merged.contains("BOB"),
        "{merged}"
    );

    let (_carol, greeting) = server.connect("concurrent", "carol").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("late joiner must be synced: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), merged);
}

#[tokio::test]
async fn a_full_state_update_is_broadcast_as_a_small_delta() {
    let server = TestServer::start().await;
    let mut alice = server.join("delta", "alice", "Alice").await;
    let mut bob = server.join("delta", "bob", "Bob").await;
    let _ = alice.recv().await;

    let paragraph = "All work and no play makes Jack a dull boy. ".repeat(200);
    alice.type_text(0, &paragraph).await;
    let first = bob.recv().await;
    bob.apply_if_document(&first);

    let full_state = alice.type_text(paragraph.len() as u32, "!").await;
    let ServerMessage::Update { data, .. } = bob.recv().await else {
        panic!("expected the delta");
    };
    let delta = data.len() / 2;
    assert!(
        full_state > 8000,
        "document should be large, is {full_state}"
    );
    assert!(
        delta * 50 < full_state,
        "delta of {delta} bytes for a full state of {full_state} bytes"
    );
    bob.apply_hex(&data);
    assert_eq!(bob.content(), alice.content());
}

#[tokio::test]
async fn backspace_propagates_even_though_the_state_vector_does_not_move() {
    let server = TestServer::start().await;
    let mut alice = server.join("backspace", "alice", "Alice").await;
    let mut bob = server.join("backspace", "bob", "Bob").await;
    let _ = alice.recv().await;
    alice.type_text(0, "typo!").await;
    let update = bob.recv().await;
    bob.apply_if_document(&update);

    alice.delete_text(4, 1).await;
    let update = bob.recv().await;
    bob.apply_if_document(&update);
    assert_eq!(bob.content(), "typo");
}

#[tokio::test]
async fn an_update_that_adds_nothing_is_not_broadcast() {
    let server = TestServer::start().await;
    let mut alice = server.join("idempotent", "alice", "Alice").await;
    let mut bob = server.join("idempotent", "bob", "Bob").await;
    let _ = alice.recv().await;
    alice.type_text(0, "once").await;
    let _ = bob.recv().await;

    // The original page re-sends its full state on every keystroke, including ones
    // that only move the cursor; the same state twice must cost the others nothing.
    alice.send_full_state().await;
    alice.send_full_state().await;
    bob.expect_silence().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_without_delaying_the_others() {
    let store = std::sync::Arc::new(coedit::server::store::memory::MemoryStore::new());
    let server = TestServer::start_tweaked(|config| config.outbound_queue = 8, store).await;
    let mut writer = server.join("slow", "writer", "Writer").await;
    let mut reader = server.join("slow", "reader", "Reader").await;
    let _ = writer.recv().await;
    // Joins, then never reads again.
    let mut stalled = server.join("slow", "stalled", "Stalled").await;
    let _ = writer.recv().await;
    let _ = reader.recv().await;

    // Large edits fill the stalled client's socket buffers, then its queue.
    let chunk = "x".repeat(64 * 1024);
    let mut position = 0;
    for _ in 0..150 {
        writer.type_incremental(position, &chunk).await;
        position += chunk.len() as u32;
        let started = std::time::Instant::now();
        let update = loop {
            match reader.recv().await {
                update @ ServerMessage::Update { .. } => break update,
                // The stalled client leaving, once it is dropped.
                ServerMessage::UserLeft { user_id } => assert_eq!(user_id, "stalled"),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "delivery to a healthy reader was held up"
        );
        reader.apply_if_document(&update);
    }
    assert_eq!(reader.content().len(), position as usize);

    let dropped = eventually(async || {
        let (_, metrics) = server.get("/metrics").await;
        metrics["slow_consumer_disconnects"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(
        dropped,
        "the stalled client must be disconnected and counted"
    );
    let (_, users) = server.get("/rooms/slow/users").await;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Writer", "Reader"]);

    // The stalled client, reading at last, finds its connection ended: after what was
    // already in its socket buffers, a 1013 close frame if the server could still
    // send one, or the end of the stream.
    let mut frames = 0;
    while let Some(frame) = stalled.next_frame(EXPECT).await {
        frames += 1;
        if let Message::Close(frame) = frame {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1013));
            break;
        }
        assert!(frames < 200, "the stalled connection is still being fed");
    }
}

#[tokio::test]
async fn the_document_outlives_its_last_connection() {
    let server = TestServer::start().await;
    let mut alice = server.join("reload", "alice", "Alice").await;
    alice.type_text(0, "still here").await;
    alice
        .send_raw(Message::text(r#"{"type":"ping","timestamp":0}"#))
        .await;
    let _ = alice.recv().await;
    alice.close().await;

    // A page reload: same client id, new socket.
    let (_again, greeting) = server.connect("reload", "alice").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("the document must still be there: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "still here");
    let (_, metrics) = server.get("/metrics").await;
    assert!(metrics["reconnect_count"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_with_1001() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.connect("shutdown", "alice").await;
    server.shutdown.cancel();
    let mut code = None;
    while let Some(frame) = alice.next_frame(EXPECT).await {
        if let Message::Close(frame) = frame {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(1001));
    server.stop().await;
}

/// The original page in a large document: every keystroke sends the whole state,
/// tens of kilobytes of hex, of which the room relays only what is new — typed
/// characters and deletions alike — whatever order the message's fields come in.
#[tokio::test]
async fn large_full_states_relay_only_what_is_new_including_deletions() {
    let server = TestServer::start().await;
    let mut alice = server.join("large", "alice", "Alice").await;
    let mut bob = server.join("large", "bob", "Bob").await;
    let _ = alice.recv().await; // bob's user_joined
    let paragraph = "A paragraph of a long document, typed over many days. ".repeat(400);
    let sent = alice.type_text(0, &paragraph).await;
    assert!(sent > 16 * 1024, "{sent}");
    let first = bob.recv().await;
    bob.apply_if_document(&first);
    assert_eq!(bob.content(), paragraph);

    let mut expected = paragraph.clone();
    for (at, ch) in [(10, "x"), (500, "y"), (15_000, "z")] {
        let sent = alice.type_text(at, ch).await;
        expected.insert_str(at as usize, ch);
        let ServerMessage::Update { data, from } = bob.recv().await else {
            panic!("an update");
        };
        assert_eq!(from, "alice");
        assert!(
            data.len() < 200,
            "{} hex chars relayed for {sent} bytes sent",
            data.len()
        );
        bob.apply_hex(&data);
        assert_eq!(bob.content(), expected);
    }
    // Deletions of text the room already holds are new too, and a repeated full
    // state with no change relays nothing.
    alice.delete_text(3, 4).await;
    expected.replace_range(3..7, "");
    let message = bob.recv().await;
    bob.apply_if_document(&message);
    assert_eq!(bob.content(), expected);
    alice.send_full_state().await;
    bob.expect_silence().await;

    // Fields in another order take the same path.
    alice.text_mut_insert(0, "!");
    let state = alice.full_state();
    alice
        .send_raw(Message::text(format!(
            r#"{{"data":"{}","type":"update"}}"#,
            hex::encode(state)
        )))
        .await;
    let message = bob.recv().await;
    bob.apply_if_document(&message);
    assert_eq!(bob.content(), format!("!{expected}"));

    // The original's spelling with a field after the data: its ends match, what
    // lies between is not hex, so it is read as the JSON it is.
    alice.text_mut_insert(0, "?");
    let state = alice.full_state();
    alice
        .send_raw(Message::text(format!(
            r#"{{"type":"update","data":"{}","note":"x"}}"#,
            hex::encode(state)
        )))
        .await;
    let message = bob.recv().await;
    bob.apply_if_document(&message);
    assert_eq!(bob.content(), format!("?!{expected}"));
}

/// Large texts are read two ways: from 16 KiB on the server reads the frame aside
/// (not through the WebSocket library), below that as any message. Both sizes
/// must answer alike.
#[tokio::test]
async fn large_messages_that_are_not_valid_updates_get_the_usual_errors() {
    let server = TestServer::start().await;
    let mut alice = server.join("large-bad", "alice", "Alice").await;
    for size in [8 * 1024, 40 * 1024] {
        let junk = "zz".repeat(size / 2);
        alice
            .send_raw(Message::text(format!(
                r#"{{"type":"update","data":"{junk}"}}"#
            )))
            .await;
        assert_eq!(
            alice.recv_value().await,
            json!({"type":"error","message":"update is not valid hex"}),
            "{size} bytes"
        );
        // An escape in the data cannot be read in place; the general path decides.
        let escaped = format!(r#"{{"type":"update","data":"\u0030{}"}}"#, "0".repeat(size));
        alice.send_raw(Message::text(escaped)).await;
        let reply = alice.recv_value().await;
        assert_eq!(reply["type"], "error", "{size} bytes: {reply}");
        // A large message of another type is handled as that type.
        let padded = format!(
            r#"{{"type":"ping","timestamp":7,"padding":"{}"}}"#,
            "p".repeat(size)
        );
        alice.send_raw(Message::text(padded)).await;
        assert_eq!(alice.recv_value().await["type"], "pong", "{size} bytes");
        let missing = format!(r#"{{"type":"nonsense","padding":"{}"}}"#, "p".repeat(size));
        alice.send_raw(Message::text(missing)).await;
        assert_eq!(
            alice.recv_value().await,
            json!({"type":"error","message":"Unknown message type: nonsense"}),
            "{size} bytes"
        );
        // Text that is not JSON at all.
        alice.send_raw(Message::text("x".repeat(size))).await;
        assert_eq!(
            alice.recv_value().await,
            json!({"type":"error","message":"Invalid JSON"}),
            "{size} bytes"
        );
    }
}

/// The original read `message.get("data", "")` and ignored an update whose data was
/// empty: null and a missing field are ignored alike, without an error or a count.
#[tokio::test]
async fn an_update_with_null_or_no_data_is_ignored_like_the_original() {
    let server = TestServer::start().await;
    let mut alice = server.join("no-data", "alice", "Alice").await;
    for message in [
        r#"{"type":"update","data":null}"#,
        r#"{"type":"update"}"#,
        r#"{"type":"update","data":""}"#,
    ] {
        alice.send_raw(Message::text(message)).await;
    }
    alice
        .send_raw(Message::text(r#"{"type":"ping","timestamp":7}"#))
        .await;
    // The pong is the first answer: nothing was said about the updates.
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"pong","timestamp":7})
    );
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(metrics["error_count"], 0, "{metrics}");
}

/// A text frame must be UTF-8 (RFC 6455): one that is not closes the connection
/// with 1007, small or large, in the hex of an update or anywhere else; the room
/// and its other members carry on.
#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007_at_any_size() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    let server = TestServer::start().await;
    let mut bob = server.join("not-utf8", "bob", "Bob").await;
    for size in [100, 40 * 1024] {
        for (open, close) in [
            (r#"{"type":"update","data":""#, r#""}"#),
            (r#"{"type":"ping","timestamp":1,"padding":""#, r#""}"#),
        ] {
            let mut vandal = server.join("not-utf8", "vandal", "Vandal").await;
            let _ = bob.recv().await; // the vandal joined
            let mut text = open.as_bytes().to_vec();
            text.extend(std::iter::repeat_n(b'0', size));
            text.extend([0xC3, 0x28]); // not UTF-8
            text.extend(close.as_bytes());
            let frame = Frame::message(text, OpCode::Data(Data::Text), true);
            vandal.socket.send(Message::Frame(frame)).await.unwrap();
            assert_eq!(
                super::documents::close_frame(&mut vandal.socket).await,
                (1007, "text message is not UTF-8".to_owned()),
                "{size} bytes after {open}"
            );
            let _ = bob.recv().await; // the vandal left
        }
    }
    bob.type_text(0, "still here").await;
    let applied = eventually(async || {
        let (_, text) = server.get("/rooms/not-utf8/text").await;
        text["text"] == "still here"
    })
    .await;
    assert!(applied, "the room takes edits after the vandals left");
}

/// An editor's paste is refused (the room is at its size limit); its next
/// keystroke, sent on its own, lands between characters the room has but follows
/// the paste in the editor's clock. Merging it anyway would put it in the room's
/// text without ever relaying it. It is refused with a reason instead, and the
/// room, the others and the store keep agreeing.
#[tokio::test]
async fn a_keystroke_that_follows_a_refused_edit_is_refused_too() {
    let server = TestServer::start_tweaked(
        |config| config.max_document_bytes = 2_000,
        std::sync::Arc::new(coedit::server::store::memory::MemoryStore::new()),
    )
    .await;
    let mut alice = server.join("gap", "alice", "Alice").await;
    let mut bob = server.join("gap", "bob", "Bob").await;
    let _ = alice.recv().await; // bob's user_joined
    alice.type_incremental(0, "ab").await;
    let typed = bob.recv().await;
    bob.apply_if_document(&typed);
    assert_eq!(bob.content(), "ab");

    alice.type_incremental(2, &"pasted ".repeat(500)).await;
    let ServerMessage::Error { message } = alice.recv().await else {
        panic!("the paste must be refused");
    };
    assert!(message.contains("limit"), "{message}");
    alice.type_incremental(1, "k").await;
    let ServerMessage::Error { message } = alice.recv().await else {
        panic!("the keystroke after the paste must be refused");
    };
    assert!(message.contains("does not have"), "{message}");
    bob.expect_silence().await;
    let (_, text) = server.get("/rooms/gap/text").await;
    assert_eq!(text["text"], "ab", "the room holds what everyone was sent");
}
