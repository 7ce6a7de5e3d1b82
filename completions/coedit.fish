# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_coedit_global_optspecs
    string join \n server= json timeout= token= h/help V/version
end

function __fish_coedit_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_coedit_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_coedit_using_subcommand
    set -l cmd (__fish_coedit_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c coedit -n "__fish_coedit_needs_command" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_needs_command" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_needs_command" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_needs_command" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_needs_command" -s h -l help -d 'Print help'
complete -c coedit -n "__fish_coedit_needs_command" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "serve" -d 'Run the collaboration server'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "rooms" -d 'List and inspect the rooms of a running server'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "metrics" -d 'Show a running server\'s metrics, once or refreshed in place'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "persist" -d 'Save a checkpoint of a room\'s document in the server\'s store'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "load" -d 'Restore a room\'s document to its last saved checkpoint'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "export" -d 'Write a room\'s document to a file: Yjs (lossless), plain text or JSON'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "import" -d 'Merge a file into a live room, as an edit every connected client receives: a Yjs update (as export writes it) or plain text appended to the document'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "history" -d 'List the versions a room\'s history keeps (edits within a minute are one version), newest first'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "show" -d 'Print a room\'s document, now or as it was: --seq N or --at TIME'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "restore" -d 'Make a room\'s document what it was at a version of its history, as a new change every connected client receives (undo it with another restore)'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "dump" -d 'Write every room of a store, with its history and checkpoint, to one file'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "restore-dump" -d 'Write the rooms of a `coedit dump` file into a store (empty, unless --force)'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "simulate" -d 'Add or remove simulated users in a room'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "cluster" -d 'List the live nodes of a server\'s cluster (a lone server lists itself), with their rooms, connections and last heartbeat'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "health" -d 'Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3)'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "token" -d 'Mint a room token for a server started with --auth-secret'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "bench" -d 'Load-test a running server with simulated editors and measure fan-out latency'
complete -c coedit -n "__fish_coedit_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l host -d 'Address to listen on' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l port -d 'Port to listen on' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l cors-origins -d 'Allowed CORS origins, comma-separated; `*` allows any' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l data-dir -d 'Directory of the embedded store (used unless --mongo-url is given)' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l mongo-url -d 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l db-name -d 'MongoDB database name' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l durability -d 'When an edit is relayed relative to being stored: `write-ahead` relays once the store has it (survives a crash), `fsync` once it is also on disk (survives power loss), `relaxed` at once, writing within --commit-interval-ms' -r -f -a "relaxed\t'Relay at once and write within `commit_interval`: a crash can lose the last window of edits, including ones other clients already saw'
write-ahead\t'Relay once the store has the update (SQLite: committed to its write-ahead log in the OS; MongoDB: insert acknowledged): whatever anyone saw survives a crash of the server'
fsync\t'As `write-ahead`, and the store syncs to disk before acknowledging (SQLite `synchronous=FULL`, MongoDB journaled writes): survives power loss too'"
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l commit-interval-ms -d 'With --durability relaxed: milliseconds accepted updates are gathered before one store write (the most a crash can lose). The write-ahead levels need no window: the next batch gathers while a write is in flight' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l compact-every -d 'Updates logged for a room before its log is compacted into one snapshot' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l history-retention -d 'How long every edit stays readable as history (`7d`, `12h`, `30m`; `0` keeps none): old versions can be listed, read and restored within it' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l idle-unload-secs -d 'Seconds a room with no connections stays in memory before it is unloaded' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l outbound-queue -d 'Messages queued for one connection before it is closed as a slow consumer (with --max-outbound-bytes, whichever comes first)' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-outbound-bytes -d 'Bytes the server may hold for one connection\'s socket (queued messages, pongs, close frames); a connection that finds it used up is closed with 1013 as a slow consumer. Keep it above twice the largest document served to JSON clients (their sync is hex)' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-message-bytes -d 'Largest WebSocket message accepted, in bytes' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l admin-token -d 'Require `Authorization: Bearer TOKEN` on the admin endpoints: room listings, events, the cluster, and every REST call that reads or changes a room\'s document (persist, load, simulate, text, stream, export, import, history, restore, delete)' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l auth-secret -d 'Require WebSocket clients to present a room token signed with this secret (mint them with `coedit token`)' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-connections -d 'Open WebSocket connections allowed in total; more get HTTP 503' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-connections-per-room -d 'Open WebSocket connections allowed per room; more get HTTP 503' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-document-bytes -d 'Largest document a room may grow to, in bytes of its Yjs encoding' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-awareness-ids -d 'Yjs client ids one y-protocol connection may hold awareness states for; more closes it with 1008' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-awareness-bytes -d 'Largest awareness state (y-protocols: closed with 1008) or presence message (JSON join, cursor, selection, awareness: refused with `error`), in bytes' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-room-users -d 'Users (client ids, simulated ones included) and awareness states one room may hold; a new client id beyond it gets HTTP 503' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l header-read-timeout-secs -d 'Seconds an HTTP client may take to send a request\'s headers before its connection is closed' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l max-pending-upgrades -d 'WebSocket upgrades being set up at once (answered, room not yet joined); more get HTTP 503' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l rate-limit -d 'Messages per second one connection may send on average (control frames included)' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l rate-burst -d 'Messages one connection may send in a burst' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l redis-url -d 'Join a cluster through this Redis (`redis://host:6379`): rooms are shared with every node on the same Redis and MongoDB. Needs --mongo-url' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l node-id -d 'This node\'s name in logs, metrics and `coedit cluster` [default: host:port]' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l persist-every -d 'How often a room\'s Redis log is moved into MongoDB (`10s`, `1m`; at least `100ms`). Updates are durable in Redis first; a node that dies holding a room\'s move is replaced after three of these (at least 10 s)' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l webhook-url -d 'URL to POST signed JSON events to (room loaded or unloaded, document changed, user joined or left, room deleted); give it again for more URLs' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l webhook-secret -d 'Signs every webhook delivery: `X-Coedit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l webhook-debounce-ms -d 'At most one `document.changed` event per room this often, in milliseconds' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l log-level -d 'Log filter, e.g. `info` or `coedit=debug`; given here (or in COEDIT_LOG) it wins over RUST_LOG. Default: RUST_LOG if set, else `info`' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l log-format -d '`text` for people (coloured only on a terminal without NO_COLOR), `json` for log shippers: one object per line' -r -f -a "text\t'One line of text per event, for people'
json\t'One JSON object per line (`timestamp`, `level`, `target`, `message` and the event\'s fields), for log shippers'"
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l start-degraded -d 'With --mongo-url: start even if MongoDB cannot be reached, serving from memory until it can (the embedded store must open)'
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l no-dashboard -d 'Do not serve the dashboard at `/` (the REST API and WebSockets are unchanged)'
complete -c coedit -n "__fish_coedit_using_subcommand serve" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand serve" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -f -a "list" -d 'List the rooms the server holds in memory, with their users and document size'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -f -a "show" -d 'Show one room: its users, connections and document size'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -f -a "users" -d 'List the users present in a room, with their colour and cursor'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -f -a "delete" -d 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server\'s store. Cannot be undone'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and not __fish_seen_subcommand_from list show users delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from list" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from list" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from list" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from show" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from show" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from show" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from show" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from users" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from users" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from users" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from users" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from users" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from users" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Delete without asking'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the rooms the server holds in memory, with their users and document size'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one room: its users, connections and document size'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from help" -f -a "users" -d 'List the users present in a room, with their colour and cursor'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server\'s store. Cannot be undone'
complete -c coedit -n "__fish_coedit_using_subcommand rooms; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -l watch -d 'Refresh every INTERVAL (default 2s) until Ctrl-C; with --json, one JSON document per line per refresh' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -f -a "events" -d 'Show the server\'s recent events: joins, leaves, persists, errors'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and not __fish_seen_subcommand_from events help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -l limit -d 'How many of the most recent events to show (server default 50, at most 1000)' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from events" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from help" -f -a "events" -d 'Show the server\'s recent events: joins, leaves, persists, errors'
complete -c coedit -n "__fish_coedit_using_subcommand metrics; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand persist" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand persist" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand persist" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand persist" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand persist" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand persist" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand load" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand load" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand load" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand load" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand load" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand load" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand export" -s f -l format -d 'What to write: yjs unless --json (which means json)' -r -f -a "yjs\t'The Yjs update of the whole document (binary, lossless; what import reads)'
text\t'The plain text of the document\'s `content` text'
json\t'Every root type of the document as JSON'"
complete -c coedit -n "__fish_coedit_using_subcommand export" -s o -l output -d 'Write to this file instead of standard output' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand export" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand export" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand export" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand export" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand export" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand import" -s f -l format -d 'What the file holds' -r -f -a "yjs\t'A Yjs update (as `coedit export` writes it), merged into the room'
text\t'Plain UTF-8 text, appended to the room\'s `content` text'"
complete -c coedit -n "__fish_coedit_using_subcommand import" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand import" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand import" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand import" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand import" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand history" -s n -l limit -d 'Newest versions to list' -r
complete -c coedit -n "__fish_coedit_using_subcommand history" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand history" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand history" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand history" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand history" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand show" -l seq -d 'The version with this sequence number (see `coedit history`)' -r
complete -c coedit -n "__fish_coedit_using_subcommand show" -l at -d 'The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration ago (90m, 2h, 1d)' -r
complete -c coedit -n "__fish_coedit_using_subcommand show" -s f -l format -d 'What to write: text unless --json (which means json)' -r -f -a "yjs\t'The Yjs update of the whole document (binary, lossless; what import reads)'
text\t'The plain text of the document\'s `content` text'
json\t'Every root type of the document as JSON'"
complete -c coedit -n "__fish_coedit_using_subcommand show" -s o -l output -d 'Write to this file instead of standard output' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand show" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand show" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand show" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand show" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand show" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand restore" -l seq -d 'The version with this sequence number (see `coedit history`)' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore" -l at -d 'The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration ago (90m, 2h, 1d)' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand restore" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand dump" -s o -l output -d 'File to write (newline-delimited JSON; written beside it as FILE.partial and renamed when complete)' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l data-dir -d 'Directory of the embedded store (used unless --mongo-url is given)' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l mongo-url -d 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store' -r
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l db-name -d 'MongoDB database name' -r
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand dump" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand dump" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand dump" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l data-dir -d 'Directory of the embedded store (used unless --mongo-url is given)' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l mongo-url -d 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l db-name -d 'MongoDB database name' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l force -d 'Restore into a store that already holds rooms: each room of the dump replaces the room of that name (deleted first); other rooms stay'
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand restore-dump" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -f -a "add" -d 'Add simulated users to a room (creating the room if needed)'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -f -a "remove" -d 'Remove every simulated user from a room'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and not __fish_seen_subcommand_from add remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -s n -l count -d 'How many users to add' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from remove" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from remove" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from remove" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from remove" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add simulated users to a room (creating the room if needed)'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove every simulated user from a room'
complete -c coedit -n "__fish_coedit_using_subcommand simulate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand cluster" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand cluster" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand cluster" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand cluster" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand cluster" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand cluster" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand health" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand health" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand health" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand health" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand health" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand health" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand completions" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand completions" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand completions" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand completions" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand completions" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand token" -l room -d 'Room the token grants; repeat for several. `prefix/*` grants every room under a prefix, `*` all rooms' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l ttl -d 'How long the token is valid, e.g. `30m`, `1h`, `7d`' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l subject -d 'Who the token is for (shown in server logs)' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l secret -d 'The server\'s auth secret' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand token" -l read-only -d 'The bearer may read and show presence but not change documents'
complete -c coedit -n "__fish_coedit_using_subcommand token" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand token" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l url -d 'Base WebSocket URL of the server; by default the --server address with ws:// (ws://127.0.0.1:8001). Give it once per node to spread each room\'s clients over the nodes of a cluster, round-robin' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l rooms -d 'Number of rooms' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l clients -d 'Clients (editors) in each room' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l rate -d 'Edits per second per client; 0 only holds the connections open' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l duration -d 'How long to measure, e.g. `10s`, `500ms`, `2m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l warmup -d 'How long clients type before measuring starts' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l ramp -d 'Connections are opened evenly over this long' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l drain -d 'Longest wait after measuring for keystrokes still on their way' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l protocol -d 'Wire protocol the simulated editors speak' -r -f -a "json\t'The original JSON protocol: `update {data: hex}` text frames (spec §7)'
yjs\t'The y-protocols of y-websocket: binary sync and update messages. The room is appended to `--url` as a provider does (`--url ws://host:8001/api/yjs` for coedit, `ws://host:1234` for a y-websocket server)'"
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l payload -d '`full`: the whole document state plus a cursor message on every keystroke, like the original browser page; `incremental`: only the keystroke\'s update' -r -f -a "full\t'The whole document state on every keystroke, then a `cursor` message — exactly what the original browser page sends'
incremental\t'Only the keystroke\'s own update'"
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l verify-rooms -d 'Rooms whose editors integrate, time and compare every delivery: `all`, or N rooms spread over the run. The other rooms\' editors type the same keystrokes but only count the updates they receive (no latency, no convergence), so the bench needs less CPU to load the server; with `--payload full` their full states carry only the sender\'s own keystrokes' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l room-prefix -d 'Room name prefix (rooms are PREFIX-0, PREFIX-1, …); random by default' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l seed -d 'Seed for the editors\' random choices' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l server-pid -d 'Pid of the server, to report its CPU use and memory over the run; give it once per node of a cluster to report their sum' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l report -d 'Also write the report as one self-contained HTML page with plots (latency percentiles, latency and deliveries over time, connection times) to FILE' -r -F
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l max-p99-ms -d 'Fail (exit 1) when the p99 fan-out latency is above this many milliseconds' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l min-delivery-ratio -d 'Fail (exit 1) when fewer than this fraction (0 to 1) of expected deliveries arrived (and, with --verify-rooms, of the light rooms\' updates)' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l server -d 'Server to talk to; `host:port` means `http://host:port`' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l timeout -d 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l token -d 'Bearer token sent in the Authorization header' -r
complete -c coedit -n "__fish_coedit_using_subcommand bench" -l json -d 'Print JSON instead of a table: the server\'s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)'
complete -c coedit -n "__fish_coedit_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coedit -n "__fish_coedit_using_subcommand bench" -s V -l version -d 'Print version'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "serve" -d 'Run the collaboration server'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "rooms" -d 'List and inspect the rooms of a running server'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "metrics" -d 'Show a running server\'s metrics, once or refreshed in place'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "persist" -d 'Save a checkpoint of a room\'s document in the server\'s store'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "load" -d 'Restore a room\'s document to its last saved checkpoint'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "export" -d 'Write a room\'s document to a file: Yjs (lossless), plain text or JSON'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "import" -d 'Merge a file into a live room, as an edit every connected client receives: a Yjs update (as export writes it) or plain text appended to the document'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "history" -d 'List the versions a room\'s history keeps (edits within a minute are one version), newest first'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "show" -d 'Print a room\'s document, now or as it was: --seq N or --at TIME'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "restore" -d 'Make a room\'s document what it was at a version of its history, as a new change every connected client receives (undo it with another restore)'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "dump" -d 'Write every room of a store, with its history and checkpoint, to one file'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "restore-dump" -d 'Write the rooms of a `coedit dump` file into a store (empty, unless --force)'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "simulate" -d 'Add or remove simulated users in a room'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "cluster" -d 'List the live nodes of a server\'s cluster (a lone server lists itself), with their rooms, connections and last heartbeat'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "health" -d 'Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3)'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "completions" -d 'Print a shell completion script'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "token" -d 'Mint a room token for a server started with --auth-secret'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "bench" -d 'Load-test a running server with simulated editors and measure fan-out latency'
complete -c coedit -n "__fish_coedit_using_subcommand help; and not __fish_seen_subcommand_from serve rooms metrics persist load export import history show restore dump restore-dump simulate cluster health completions token bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from rooms" -f -a "list" -d 'List the rooms the server holds in memory, with their users and document size'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from rooms" -f -a "show" -d 'Show one room: its users, connections and document size'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from rooms" -f -a "users" -d 'List the users present in a room, with their colour and cursor'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from rooms" -f -a "delete" -d 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server\'s store. Cannot be undone'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from metrics" -f -a "events" -d 'Show the server\'s recent events: joins, leaves, persists, errors'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from simulate" -f -a "add" -d 'Add simulated users to a room (creating the room if needed)'
complete -c coedit -n "__fish_coedit_using_subcommand help; and __fish_seen_subcommand_from simulate" -f -a "remove" -d 'Remove every simulated user from a room'
