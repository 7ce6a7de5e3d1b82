
use builtin;
use str;

set edit:completion:arg-completer[coedit] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'coedit'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'coedit'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the collaboration server'
            cand rooms 'List and inspect the rooms of a running server'
            cand metrics 'Show a running server''s metrics, once or refreshed in place'
            cand persist 'Save a checkpoint of a room''s document in the server''s store'
            cand load 'Restore a room''s document to its last saved checkpoint'
            cand export 'Write a room''s document to a file: Yjs (lossless), plain text or JSON'
            cand import 'Merge a file into a live room, as an edit every connected client receives: a Yjs update (as export writes it) or plain text appended to the document'
            cand history 'List the versions a room''s history keeps (edits within a minute are one version), newest first'
            cand show 'Print a room''s document, now or as it was: --seq N or --at TIME'
            cand restore 'Make a room''s document what it was at a version of its history, as a new change every connected client receives (undo it with another restore)'
            cand dump 'Write every room of a store, with its history and checkpoint, to one file'
            cand restore-dump 'Write the rooms of a `coedit dump` file into a store (empty, unless --force)'
            cand simulate 'Add or remove simulated users in a room'
            cand cluster 'List the live nodes of a server''s cluster (a lone server lists itself), with their rooms, connections and last heartbeat'
            cand health 'Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3)'
            cand completions 'Print a shell completion script'
            cand token 'Mint a room token for a server started with --auth-secret'
            cand bench 'Load-test a running server with simulated editors and measure fan-out latency'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;serve'= {
            cand --host 'Address to listen on'
            cand --port 'Port to listen on'
            cand --cors-origins 'Allowed CORS origins, comma-separated; `*` allows any'
            cand --data-dir 'Directory of the embedded store (used unless --mongo-url is given)'
            cand --mongo-url 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store'
            cand --db-name 'MongoDB database name'
            cand --durability 'When an edit is relayed relative to being stored: `write-ahead` relays once the store has it (survives a crash), `fsync` once it is also on disk (survives power loss), `relaxed` at once, writing within --commit-interval-ms'
            cand --commit-interval-ms 'With --durability relaxed: milliseconds accepted updates are gathered before one store write (the most a crash can lose). The write-ahead levels need no window: the next batch gathers while a write is in flight'
            cand --compact-every 'Updates logged for a room before its log is compacted into one snapshot'
            cand --history-retention 'How long every edit stays readable as history (`7d`, `12h`, `30m`; `0` keeps none): old versions can be listed, read and restored within it'
            cand --idle-unload-secs 'Seconds a room with no connections stays in memory before it is unloaded'
            cand --outbound-queue 'Messages queued for one connection before it is closed as a slow consumer (with --max-outbound-bytes, whichever comes first)'
            cand --max-outbound-bytes 'Bytes the server may hold for one connection''s socket (queued messages, pongs, close frames); a connection that finds it used up is closed with 1013 as a slow consumer. Keep it above twice the largest document served to JSON clients (their sync is hex)'
            cand --max-message-bytes 'Largest WebSocket message accepted, in bytes'
            cand --admin-token 'Require `Authorization: Bearer TOKEN` on the admin endpoints: room listings, events, the cluster, and every REST call that reads or changes a room''s document (persist, load, simulate, text, stream, export, import, history, restore, delete)'
            cand --auth-secret 'Require WebSocket clients to present a room token signed with this secret (mint them with `coedit token`)'
            cand --max-connections 'Open WebSocket connections allowed in total; more get HTTP 503'
            cand --max-connections-per-room 'Open WebSocket connections allowed per room; more get HTTP 503'
            cand --max-document-bytes 'Largest document a room may grow to, in bytes of its Yjs encoding'
            cand --max-awareness-ids 'Yjs client ids one y-protocol connection may hold awareness states for; more closes it with 1008'
            cand --max-awareness-bytes 'Largest awareness state (y-protocols: closed with 1008) or presence message (JSON join, cursor, selection, awareness: refused with `error`), in bytes'
            cand --max-room-users 'Users (client ids, simulated ones included) and awareness states one room may hold; a new client id beyond it gets HTTP 503'
            cand --header-read-timeout-secs 'Seconds an HTTP client may take to send a request''s headers before its connection is closed'
            cand --max-pending-upgrades 'WebSocket upgrades being set up at once (answered, room not yet joined); more get HTTP 503'
            cand --rate-limit 'Messages per second one connection may send on average (control frames included)'
            cand --rate-burst 'Messages one connection may send in a burst'
            cand --redis-url 'Join a cluster through this Redis (`redis://host:6379`): rooms are shared with every node on the same Redis and MongoDB. Needs --mongo-url'
            cand --node-id 'This node''s name in logs, metrics and `coedit cluster` [default: host:port]'
            cand --persist-every 'How often a room''s Redis log is moved into MongoDB (`10s`, `1m`; at least `100ms`). Updates are durable in Redis first; a node that dies holding a room''s move is replaced after three of these (at least 10 s)'
            cand --webhook-url 'URL to POST signed JSON events to (room loaded or unloaded, document changed, user joined or left, room deleted); give it again for more URLs'
            cand --webhook-secret 'Signs every webhook delivery: `X-Coedit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`'
            cand --webhook-debounce-ms 'At most one `document.changed` event per room this often, in milliseconds'
            cand --log-level 'Log filter, e.g. `info` or `coedit=debug`; given here (or in COEDIT_LOG) it wins over RUST_LOG. Default: RUST_LOG if set, else `info`'
            cand --log-format '`text` for people (coloured only on a terminal without NO_COLOR), `json` for log shippers: one object per line'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --start-degraded 'With --mongo-url: start even if MongoDB cannot be reached, serving from memory until it can (the embedded store must open)'
            cand --no-dashboard 'Do not serve the dashboard at `/` (the REST API and WebSockets are unchanged)'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;rooms'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List the rooms the server holds in memory, with their users and document size'
            cand show 'Show one room: its users, connections and document size'
            cand users 'List the users present in a room, with their colour and cursor'
            cand delete 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server''s store. Cannot be undone'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;rooms;list'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;rooms;show'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;rooms;users'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;rooms;delete'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand -y 'Delete without asking'
            cand --yes 'Delete without asking'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;rooms;help'= {
            cand list 'List the rooms the server holds in memory, with their users and document size'
            cand show 'Show one room: its users, connections and document size'
            cand users 'List the users present in a room, with their colour and cursor'
            cand delete 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server''s store. Cannot be undone'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;rooms;help;list'= {
        }
        &'coedit;rooms;help;show'= {
        }
        &'coedit;rooms;help;users'= {
        }
        &'coedit;rooms;help;delete'= {
        }
        &'coedit;rooms;help;help'= {
        }
        &'coedit;metrics'= {
            cand --watch 'Refresh every INTERVAL (default 2s) until Ctrl-C; with --json, one JSON document per line per refresh'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand events 'Show the server''s recent events: joins, leaves, persists, errors'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;metrics;events'= {
            cand --limit 'How many of the most recent events to show (server default 50, at most 1000)'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;metrics;help'= {
            cand events 'Show the server''s recent events: joins, leaves, persists, errors'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;metrics;help;events'= {
        }
        &'coedit;metrics;help;help'= {
        }
        &'coedit;persist'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;load'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;export'= {
            cand -f 'What to write: yjs unless --json (which means json)'
            cand --format 'What to write: yjs unless --json (which means json)'
            cand -o 'Write to this file instead of standard output'
            cand --output 'Write to this file instead of standard output'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;import'= {
            cand -f 'What the file holds'
            cand --format 'What the file holds'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;history'= {
            cand -n 'Newest versions to list'
            cand --limit 'Newest versions to list'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;show'= {
            cand --seq 'The version with this sequence number (see `coedit history`)'
            cand --at 'The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration ago (90m, 2h, 1d)'
            cand -f 'What to write: text unless --json (which means json)'
            cand --format 'What to write: text unless --json (which means json)'
            cand -o 'Write to this file instead of standard output'
            cand --output 'Write to this file instead of standard output'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;restore'= {
            cand --seq 'The version with this sequence number (see `coedit history`)'
            cand --at 'The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration ago (90m, 2h, 1d)'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;dump'= {
            cand -o 'File to write (newline-delimited JSON; written beside it as FILE.partial and renamed when complete)'
            cand --output 'File to write (newline-delimited JSON; written beside it as FILE.partial and renamed when complete)'
            cand --data-dir 'Directory of the embedded store (used unless --mongo-url is given)'
            cand --mongo-url 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store'
            cand --db-name 'MongoDB database name'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;restore-dump'= {
            cand --data-dir 'Directory of the embedded store (used unless --mongo-url is given)'
            cand --mongo-url 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store'
            cand --db-name 'MongoDB database name'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --force 'Restore into a store that already holds rooms: each room of the dump replaces the room of that name (deleted first); other rooms stay'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;simulate'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add simulated users to a room (creating the room if needed)'
            cand remove 'Remove every simulated user from a room'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;simulate;add'= {
            cand -n 'How many users to add'
            cand --count 'How many users to add'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;simulate;remove'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;simulate;help'= {
            cand add 'Add simulated users to a room (creating the room if needed)'
            cand remove 'Remove every simulated user from a room'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;simulate;help;add'= {
        }
        &'coedit;simulate;help;remove'= {
        }
        &'coedit;simulate;help;help'= {
        }
        &'coedit;cluster'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;health'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;completions'= {
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;token'= {
            cand --room 'Room the token grants; repeat for several. `prefix/*` grants every room under a prefix, `*` all rooms'
            cand --ttl 'How long the token is valid, e.g. `30m`, `1h`, `7d`'
            cand --subject 'Who the token is for (shown in server logs)'
            cand --secret 'The server''s auth secret'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --read-only 'The bearer may read and show presence but not change documents'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;bench'= {
            cand --url 'Base WebSocket URL of the server; by default the --server address with ws:// (ws://127.0.0.1:8001). Give it once per node to spread each room''s clients over the nodes of a cluster, round-robin'
            cand --rooms 'Number of rooms'
            cand --clients 'Clients (editors) in each room'
            cand --rate 'Edits per second per client; 0 only holds the connections open'
            cand --duration 'How long to measure, e.g. `10s`, `500ms`, `2m`'
            cand --warmup 'How long clients type before measuring starts'
            cand --ramp 'Connections are opened evenly over this long'
            cand --drain 'Longest wait after measuring for keystrokes still on their way'
            cand --protocol 'Wire protocol the simulated editors speak'
            cand --payload '`full`: the whole document state plus a cursor message on every keystroke, like the original browser page; `incremental`: only the keystroke''s update'
            cand --verify-rooms 'Rooms whose editors integrate, time and compare every delivery: `all`, or N rooms spread over the run. The other rooms'' editors type the same keystrokes but only count the updates they receive (no latency, no convergence), so the bench needs less CPU to load the server; with `--payload full` their full states carry only the sender''s own keystrokes'
            cand --room-prefix 'Room name prefix (rooms are PREFIX-0, PREFIX-1, …); random by default'
            cand --seed 'Seed for the editors'' random choices'
            cand --server-pid 'Pid of the server, to report its CPU use and memory over the run; give it once per node of a cluster to report their sum'
            cand --report 'Also write the report as one self-contained HTML page with plots (latency percentiles, latency and deliveries over time, connection times) to FILE'
            cand --max-p99-ms 'Fail (exit 1) when the p99 fan-out latency is above this many milliseconds'
            cand --min-delivery-ratio 'Fail (exit 1) when fewer than this fraction (0 to 1) of expected deliveries arrived (and, with --verify-rooms, of the light rooms'' updates)'
            cand --server 'Server to talk to; `host:port` means `http://host:port`'
            cand --timeout 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`'
            cand --token 'Bearer token sent in the Authorization header'
            cand --json 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'coedit;help'= {
            cand serve 'Run the collaboration server'
            cand rooms 'List and inspect the rooms of a running server'
            cand metrics 'Show a running server''s metrics, once or refreshed in place'
            cand persist 'Save a checkpoint of a room''s document in the server''s store'
            cand load 'Restore a room''s document to its last saved checkpoint'
            cand export 'Write a room''s document to a file: Yjs (lossless), plain text or JSON'
            cand import 'Merge a file into a live room, as an edit every connected client receives: a Yjs update (as export writes it) or plain text appended to the document'
            cand history 'List the versions a room''s history keeps (edits within a minute are one version), newest first'
            cand show 'Print a room''s document, now or as it was: --seq N or --at TIME'
            cand restore 'Make a room''s document what it was at a version of its history, as a new change every connected client receives (undo it with another restore)'
            cand dump 'Write every room of a store, with its history and checkpoint, to one file'
            cand restore-dump 'Write the rooms of a `coedit dump` file into a store (empty, unless --force)'
            cand simulate 'Add or remove simulated users in a room'
            cand cluster 'List the live nodes of a server''s cluster (a lone server lists itself), with their rooms, connections and last heartbeat'
            cand health 'Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3)'
            cand completions 'Print a shell completion script'
            cand token 'Mint a room token for a server started with --auth-secret'
            cand bench 'Load-test a running server with simulated editors and measure fan-out latency'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'coedit;help;serve'= {
        }
        &'coedit;help;rooms'= {
            cand list 'List the rooms the server holds in memory, with their users and document size'
            cand show 'Show one room: its users, connections and document size'
            cand users 'List the users present in a room, with their colour and cursor'
            cand delete 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server''s store. Cannot be undone'
        }
        &'coedit;help;rooms;list'= {
        }
        &'coedit;help;rooms;show'= {
        }
        &'coedit;help;rooms;users'= {
        }
        &'coedit;help;rooms;delete'= {
        }
        &'coedit;help;metrics'= {
            cand events 'Show the server''s recent events: joins, leaves, persists, errors'
        }
        &'coedit;help;metrics;events'= {
        }
        &'coedit;help;persist'= {
        }
        &'coedit;help;load'= {
        }
        &'coedit;help;export'= {
        }
        &'coedit;help;import'= {
        }
        &'coedit;help;history'= {
        }
        &'coedit;help;show'= {
        }
        &'coedit;help;restore'= {
        }
        &'coedit;help;dump'= {
        }
        &'coedit;help;restore-dump'= {
        }
        &'coedit;help;simulate'= {
            cand add 'Add simulated users to a room (creating the room if needed)'
            cand remove 'Remove every simulated user from a room'
        }
        &'coedit;help;simulate;add'= {
        }
        &'coedit;help;simulate;remove'= {
        }
        &'coedit;help;cluster'= {
        }
        &'coedit;help;health'= {
        }
        &'coedit;help;completions'= {
        }
        &'coedit;help;token'= {
        }
        &'coedit;help;bench'= {
        }
        &'coedit;help;help'= {
        }
    ]
    $completions[$command]
}
