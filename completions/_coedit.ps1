
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'coedit' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'coedit'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'coedit' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the collaboration server')
            [CompletionResult]::new('rooms', 'rooms', [CompletionResultType]::ParameterValue, 'List and inspect the rooms of a running server')
            [CompletionResult]::new('metrics', 'metrics', [CompletionResultType]::ParameterValue, 'Show a running server''s metrics, once or refreshed in place')
            [CompletionResult]::new('persist', 'persist', [CompletionResultType]::ParameterValue, 'Save a checkpoint of a room''s document in the server''s store')
            [CompletionResult]::new('load', 'load', [CompletionResultType]::ParameterValue, 'Restore a room''s document to its last saved checkpoint')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a room''s document to a file: Yjs (lossless), plain text or JSON')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Merge a file into a live room, as an edit every connected client receives: a Yjs update (as export writes it) or plain text appended to the document')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'List the versions a room''s history keeps (edits within a minute are one version), newest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print a room''s document, now or as it was: --seq N or --at TIME')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Make a room''s document what it was at a version of its history, as a new change every connected client receives (undo it with another restore)')
            [CompletionResult]::new('dump', 'dump', [CompletionResultType]::ParameterValue, 'Write every room of a store, with its history and checkpoint, to one file')
            [CompletionResult]::new('restore-dump', 'restore-dump', [CompletionResultType]::ParameterValue, 'Write the rooms of a `coedit dump` file into a store (empty, unless --force)')
            [CompletionResult]::new('simulate', 'simulate', [CompletionResultType]::ParameterValue, 'Add or remove simulated users in a room')
            [CompletionResult]::new('cluster', 'cluster', [CompletionResultType]::ParameterValue, 'List the live nodes of a server''s cluster (a lone server lists itself), with their rooms, connections and last heartbeat')
            [CompletionResult]::new('health', 'health', [CompletionResultType]::ParameterValue, 'Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Mint a room token for a server started with --auth-secret')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load-test a running server with simulated editors and measure fan-out latency')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;serve' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Address to listen on')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port to listen on')
            [CompletionResult]::new('--cors-origins', '--cors-origins', [CompletionResultType]::ParameterName, 'Allowed CORS origins, comma-separated; `*` allows any')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory of the embedded store (used unless --mongo-url is given)')
            [CompletionResult]::new('--mongo-url', '--mongo-url', [CompletionResultType]::ParameterName, 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store')
            [CompletionResult]::new('--db-name', '--db-name', [CompletionResultType]::ParameterName, 'MongoDB database name')
            [CompletionResult]::new('--durability', '--durability', [CompletionResultType]::ParameterName, 'When an edit is relayed relative to being stored: `write-ahead` relays once the store has it (survives a crash), `fsync` once it is also on disk (survives power loss), `relaxed` at once, writing within --commit-interval-ms')
            [CompletionResult]::new('--commit-interval-ms', '--commit-interval-ms', [CompletionResultType]::ParameterName, 'With --durability relaxed: milliseconds accepted updates are gathered before one store write (the most a crash can lose). The write-ahead levels need no window: the next batch gathers while a write is in flight')
            [CompletionResult]::new('--compact-every', '--compact-every', [CompletionResultType]::ParameterName, 'Updates logged for a room before its log is compacted into one snapshot')
            [CompletionResult]::new('--history-retention', '--history-retention', [CompletionResultType]::ParameterName, 'How long every edit stays readable as history (`7d`, `12h`, `30m`; `0` keeps none): old versions can be listed, read and restored within it')
            [CompletionResult]::new('--idle-unload-secs', '--idle-unload-secs', [CompletionResultType]::ParameterName, 'Seconds a room with no connections stays in memory before it is unloaded')
            [CompletionResult]::new('--outbound-queue', '--outbound-queue', [CompletionResultType]::ParameterName, 'Messages queued for one connection before it is closed as a slow consumer (with --max-outbound-bytes, whichever comes first)')
            [CompletionResult]::new('--max-outbound-bytes', '--max-outbound-bytes', [CompletionResultType]::ParameterName, 'Bytes the server may hold for one connection''s socket (queued messages, pongs, close frames); a connection that finds it used up is closed with 1013 as a slow consumer. Keep it above twice the largest document served to JSON clients (their sync is hex)')
            [CompletionResult]::new('--max-message-bytes', '--max-message-bytes', [CompletionResultType]::ParameterName, 'Largest WebSocket message accepted, in bytes')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'Require `Authorization: Bearer TOKEN` on the admin endpoints: room listings, events, the cluster, and every REST call that reads or changes a room''s document (persist, load, simulate, text, stream, export, import, history, restore, delete)')
            [CompletionResult]::new('--auth-secret', '--auth-secret', [CompletionResultType]::ParameterName, 'Require WebSocket clients to present a room token signed with this secret (mint them with `coedit token`)')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Open WebSocket connections allowed in total; more get HTTP 503')
            [CompletionResult]::new('--max-connections-per-room', '--max-connections-per-room', [CompletionResultType]::ParameterName, 'Open WebSocket connections allowed per room; more get HTTP 503')
            [CompletionResult]::new('--max-document-bytes', '--max-document-bytes', [CompletionResultType]::ParameterName, 'Largest document a room may grow to, in bytes of its Yjs encoding')
            [CompletionResult]::new('--max-awareness-ids', '--max-awareness-ids', [CompletionResultType]::ParameterName, 'Yjs client ids one y-protocol connection may hold awareness states for; more closes it with 1008')
            [CompletionResult]::new('--max-awareness-bytes', '--max-awareness-bytes', [CompletionResultType]::ParameterName, 'Largest awareness state (y-protocols: closed with 1008) or presence message (JSON join, cursor, selection, awareness: refused with `error`), in bytes')
            [CompletionResult]::new('--max-room-users', '--max-room-users', [CompletionResultType]::ParameterName, 'Users (client ids, simulated ones included) and awareness states one room may hold; a new client id beyond it gets HTTP 503')
            [CompletionResult]::new('--header-read-timeout-secs', '--header-read-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds an HTTP client may take to send a request''s headers before its connection is closed')
            [CompletionResult]::new('--max-pending-upgrades', '--max-pending-upgrades', [CompletionResultType]::ParameterName, 'WebSocket upgrades being set up at once (answered, room not yet joined); more get HTTP 503')
            [CompletionResult]::new('--rate-limit', '--rate-limit', [CompletionResultType]::ParameterName, 'Messages per second one connection may send on average (control frames included)')
            [CompletionResult]::new('--rate-burst', '--rate-burst', [CompletionResultType]::ParameterName, 'Messages one connection may send in a burst')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Join a cluster through this Redis (`redis://host:6379`): rooms are shared with every node on the same Redis and MongoDB. Needs --mongo-url')
            [CompletionResult]::new('--node-id', '--node-id', [CompletionResultType]::ParameterName, 'This node''s name in logs, metrics and `coedit cluster` [default: host:port]')
            [CompletionResult]::new('--persist-every', '--persist-every', [CompletionResultType]::ParameterName, 'How often a room''s Redis log is moved into MongoDB (`10s`, `1m`; at least `100ms`). Updates are durable in Redis first; a node that dies holding a room''s move is replaced after three of these (at least 10 s)')
            [CompletionResult]::new('--webhook-url', '--webhook-url', [CompletionResultType]::ParameterName, 'URL to POST signed JSON events to (room loaded or unloaded, document changed, user joined or left, room deleted); give it again for more URLs')
            [CompletionResult]::new('--webhook-secret', '--webhook-secret', [CompletionResultType]::ParameterName, 'Signs every webhook delivery: `X-Coedit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`')
            [CompletionResult]::new('--webhook-debounce-ms', '--webhook-debounce-ms', [CompletionResultType]::ParameterName, 'At most one `document.changed` event per room this often, in milliseconds')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter, e.g. `info` or `coedit=debug`; given here (or in COEDIT_LOG) it wins over RUST_LOG. Default: RUST_LOG if set, else `info`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, '`text` for people (coloured only on a terminal without NO_COLOR), `json` for log shippers: one object per line')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--start-degraded', '--start-degraded', [CompletionResultType]::ParameterName, 'With --mongo-url: start even if MongoDB cannot be reached, serving from memory until it can (the embedded store must open)')
            [CompletionResult]::new('--no-dashboard', '--no-dashboard', [CompletionResultType]::ParameterName, 'Do not serve the dashboard at `/` (the REST API and WebSockets are unchanged)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;rooms' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the rooms the server holds in memory, with their users and document size')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one room: its users, connections and document size')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'List the users present in a room, with their colour and cursor')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server''s store. Cannot be undone')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;rooms;list' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;rooms;show' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;rooms;users' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;rooms;delete' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Delete without asking')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Delete without asking')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;rooms;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the rooms the server holds in memory, with their users and document size')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one room: its users, connections and document size')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'List the users present in a room, with their colour and cursor')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server''s store. Cannot be undone')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;rooms;help;list' {
            break
        }
        'coedit;rooms;help;show' {
            break
        }
        'coedit;rooms;help;users' {
            break
        }
        'coedit;rooms;help;delete' {
            break
        }
        'coedit;rooms;help;help' {
            break
        }
        'coedit;metrics' {
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Refresh every INTERVAL (default 2s) until Ctrl-C; with --json, one JSON document per line per refresh')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('events', 'events', [CompletionResultType]::ParameterValue, 'Show the server''s recent events: joins, leaves, persists, errors')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;metrics;events' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'How many of the most recent events to show (server default 50, at most 1000)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;metrics;help' {
            [CompletionResult]::new('events', 'events', [CompletionResultType]::ParameterValue, 'Show the server''s recent events: joins, leaves, persists, errors')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;metrics;help;events' {
            break
        }
        'coedit;metrics;help;help' {
            break
        }
        'coedit;persist' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;load' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;export' {
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'What to write: yjs unless --json (which means json)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'What to write: yjs unless --json (which means json)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write to this file instead of standard output')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write to this file instead of standard output')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;import' {
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'What the file holds')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'What the file holds')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;history' {
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Newest versions to list')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Newest versions to list')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;show' {
            [CompletionResult]::new('--seq', '--seq', [CompletionResultType]::ParameterName, 'The version with this sequence number (see `coedit history`)')
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration ago (90m, 2h, 1d)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'What to write: text unless --json (which means json)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'What to write: text unless --json (which means json)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write to this file instead of standard output')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write to this file instead of standard output')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;restore' {
            [CompletionResult]::new('--seq', '--seq', [CompletionResultType]::ParameterName, 'The version with this sequence number (see `coedit history`)')
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration ago (90m, 2h, 1d)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;dump' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'File to write (newline-delimited JSON; written beside it as FILE.partial and renamed when complete)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'File to write (newline-delimited JSON; written beside it as FILE.partial and renamed when complete)')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory of the embedded store (used unless --mongo-url is given)')
            [CompletionResult]::new('--mongo-url', '--mongo-url', [CompletionResultType]::ParameterName, 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store')
            [CompletionResult]::new('--db-name', '--db-name', [CompletionResultType]::ParameterName, 'MongoDB database name')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;restore-dump' {
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Directory of the embedded store (used unless --mongo-url is given)')
            [CompletionResult]::new('--mongo-url', '--mongo-url', [CompletionResultType]::ParameterName, 'MongoDB connection string; when set, rooms are stored in MongoDB instead of the embedded store')
            [CompletionResult]::new('--db-name', '--db-name', [CompletionResultType]::ParameterName, 'MongoDB database name')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Restore into a store that already holds rooms: each room of the dump replaces the room of that name (deleted first); other rooms stay')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;simulate' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add simulated users to a room (creating the room if needed)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove every simulated user from a room')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;simulate;add' {
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'How many users to add')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'How many users to add')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;simulate;remove' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;simulate;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add simulated users to a room (creating the room if needed)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove every simulated user from a room')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;simulate;help;add' {
            break
        }
        'coedit;simulate;help;remove' {
            break
        }
        'coedit;simulate;help;help' {
            break
        }
        'coedit;cluster' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;health' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;completions' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;token' {
            [CompletionResult]::new('--room', '--room', [CompletionResultType]::ParameterName, 'Room the token grants; repeat for several. `prefix/*` grants every room under a prefix, `*` all rooms')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'How long the token is valid, e.g. `30m`, `1h`, `7d`')
            [CompletionResult]::new('--subject', '--subject', [CompletionResultType]::ParameterName, 'Who the token is for (shown in server logs)')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'The server''s auth secret')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--read-only', '--read-only', [CompletionResultType]::ParameterName, 'The bearer may read and show presence but not change documents')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;bench' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'Base WebSocket URL of the server; by default the --server address with ws:// (ws://127.0.0.1:8001). Give it once per node to spread each room''s clients over the nodes of a cluster, round-robin')
            [CompletionResult]::new('--rooms', '--rooms', [CompletionResultType]::ParameterName, 'Number of rooms')
            [CompletionResult]::new('--clients', '--clients', [CompletionResultType]::ParameterName, 'Clients (editors) in each room')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'Edits per second per client; 0 only holds the connections open')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long to measure, e.g. `10s`, `500ms`, `2m`')
            [CompletionResult]::new('--warmup', '--warmup', [CompletionResultType]::ParameterName, 'How long clients type before measuring starts')
            [CompletionResult]::new('--ramp', '--ramp', [CompletionResultType]::ParameterName, 'Connections are opened evenly over this long')
            [CompletionResult]::new('--drain', '--drain', [CompletionResultType]::ParameterName, 'Longest wait after measuring for keystrokes still on their way')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Wire protocol the simulated editors speak')
            [CompletionResult]::new('--payload', '--payload', [CompletionResultType]::ParameterName, '`full`: the whole document state plus a cursor message on every keystroke, like the original browser page; `incremental`: only the keystroke''s update')
            [CompletionResult]::new('--verify-rooms', '--verify-rooms', [CompletionResultType]::ParameterName, 'Rooms whose editors integrate, time and compare every delivery: `all`, or N rooms spread over the run. The other rooms'' editors type the same keystrokes but only count the updates they receive (no latency, no convergence), so the bench needs less CPU to load the server; with `--payload full` their full states carry only the sender''s own keystrokes')
            [CompletionResult]::new('--room-prefix', '--room-prefix', [CompletionResultType]::ParameterName, 'Room name prefix (rooms are PREFIX-0, PREFIX-1, …); random by default')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seed for the editors'' random choices')
            [CompletionResult]::new('--server-pid', '--server-pid', [CompletionResultType]::ParameterName, 'Pid of the server, to report its CPU use and memory over the run; give it once per node of a cluster to report their sum')
            [CompletionResult]::new('--report', '--report', [CompletionResultType]::ParameterName, 'Also write the report as one self-contained HTML page with plots (latency percentiles, latency and deliveries over time, connection times) to FILE')
            [CompletionResult]::new('--max-p99-ms', '--max-p99-ms', [CompletionResultType]::ParameterName, 'Fail (exit 1) when the p99 fan-out latency is above this many milliseconds')
            [CompletionResult]::new('--min-delivery-ratio', '--min-delivery-ratio', [CompletionResultType]::ParameterName, 'Fail (exit 1) when fewer than this fraction (0 to 1) of expected deliveries arrived (and, with --verify-rooms, of the light rooms'' updates)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server to talk to; `host:port` means `http://host:port`')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up on the server after this long: seconds, or a duration like `500ms`, `5s`, `1m`')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token sent in the Authorization header')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table: the server''s answer as received (for `bench`, its report; for `export` and `show`, `--format json`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'coedit;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the collaboration server')
            [CompletionResult]::new('rooms', 'rooms', [CompletionResultType]::ParameterValue, 'List and inspect the rooms of a running server')
            [CompletionResult]::new('metrics', 'metrics', [CompletionResultType]::ParameterValue, 'Show a running server''s metrics, once or refreshed in place')
            [CompletionResult]::new('persist', 'persist', [CompletionResultType]::ParameterValue, 'Save a checkpoint of a room''s document in the server''s store')
            [CompletionResult]::new('load', 'load', [CompletionResultType]::ParameterValue, 'Restore a room''s document to its last saved checkpoint')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a room''s document to a file: Yjs (lossless), plain text or JSON')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Merge a file into a live room, as an edit every connected client receives: a Yjs update (as export writes it) or plain text appended to the document')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'List the versions a room''s history keeps (edits within a minute are one version), newest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print a room''s document, now or as it was: --seq N or --at TIME')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Make a room''s document what it was at a version of its history, as a new change every connected client receives (undo it with another restore)')
            [CompletionResult]::new('dump', 'dump', [CompletionResultType]::ParameterValue, 'Write every room of a store, with its history and checkpoint, to one file')
            [CompletionResult]::new('restore-dump', 'restore-dump', [CompletionResultType]::ParameterValue, 'Write the rooms of a `coedit dump` file into a store (empty, unless --force)')
            [CompletionResult]::new('simulate', 'simulate', [CompletionResultType]::ParameterValue, 'Add or remove simulated users in a room')
            [CompletionResult]::new('cluster', 'cluster', [CompletionResultType]::ParameterValue, 'List the live nodes of a server''s cluster (a lone server lists itself), with their rooms, connections and last heartbeat')
            [CompletionResult]::new('health', 'health', [CompletionResultType]::ParameterValue, 'Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Mint a room token for a server started with --auth-secret')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load-test a running server with simulated editors and measure fan-out latency')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'coedit;help;serve' {
            break
        }
        'coedit;help;rooms' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the rooms the server holds in memory, with their users and document size')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one room: its users, connections and document size')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'List the users present in a room, with their colour and cursor')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a room: its connections are closed, and its document, history and checkpoint are removed from the server''s store. Cannot be undone')
            break
        }
        'coedit;help;rooms;list' {
            break
        }
        'coedit;help;rooms;show' {
            break
        }
        'coedit;help;rooms;users' {
            break
        }
        'coedit;help;rooms;delete' {
            break
        }
        'coedit;help;metrics' {
            [CompletionResult]::new('events', 'events', [CompletionResultType]::ParameterValue, 'Show the server''s recent events: joins, leaves, persists, errors')
            break
        }
        'coedit;help;metrics;events' {
            break
        }
        'coedit;help;persist' {
            break
        }
        'coedit;help;load' {
            break
        }
        'coedit;help;export' {
            break
        }
        'coedit;help;import' {
            break
        }
        'coedit;help;history' {
            break
        }
        'coedit;help;show' {
            break
        }
        'coedit;help;restore' {
            break
        }
        'coedit;help;dump' {
            break
        }
        'coedit;help;restore-dump' {
            break
        }
        'coedit;help;simulate' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add simulated users to a room (creating the room if needed)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove every simulated user from a room')
            break
        }
        'coedit;help;simulate;add' {
            break
        }
        'coedit;help;simulate;remove' {
            break
        }
        'coedit;help;cluster' {
            break
        }
        'coedit;help;health' {
            break
        }
        'coedit;help;completions' {
            break
        }
        'coedit;help;token' {
            break
        }
        'coedit;help;bench' {
            break
        }
        'coedit;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
