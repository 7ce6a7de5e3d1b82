//! The original JSON WebSocket protocol (spec §7), told from the clients' side.

use coedit::api::{ClientMessage, ServerMessage};

use super::common::*;

#[tokio::test]
async fn an_empty_room_greets_with_users_only_and_a_written_one_with_sync_first() {
    let server = TestServer::start().await;
    let (_alice_raw, greeting) = server.connect("greet", "alice").await;
    assert_eq!(greeting, vec![ServerMessage::Users { users: vec![] }]);

    let mut alice = server.join("greet", "alice-2", "Alice").await;
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
    assert_eq!(users[0].name, "Alice");
    let _ = ClientMessage::SyncRequest;
}
