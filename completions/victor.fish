# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_victor_global_optspecs
    string join \n config= h/help V/version
end

function __fish_victor_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_victor_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_victor_using_subcommand
    set -l cmd (__fish_victor_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c victor -n "__fish_victor_needs_command" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c victor -n "__fish_victor_needs_command" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_needs_command" -f -a "serve" -d 'Run the task server on this machine'
complete -c victor -n "__fish_victor_needs_command" -f -a "task" -d 'Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes)'
complete -c victor -n "__fish_victor_needs_command" -f -a "watch" -d 'Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped)'
complete -c victor -n "__fish_victor_needs_command" -f -a "chat" -d 'Chat with the server\'s models: interactively on a terminal, or one question for scripts'
complete -c victor -n "__fish_victor_needs_command" -f -a "repl" -d 'Run code in an interpreter session (a Jupyter kernel on the server that keeps its state)'
complete -c victor -n "__fish_victor_needs_command" -f -a "keys" -d 'Create, list and revoke scoped API keys (read, control, admin)'
complete -c victor -n "__fish_victor_needs_command" -f -a "remote" -d 'Keep servers on other machines under a name, pinned to their TLS certificate'
complete -c victor -n "__fish_victor_needs_command" -f -a "render" -d 'Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server'
complete -c victor -n "__fish_victor_needs_command" -f -a "mcp" -d 'Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a remote\'s name)'
complete -c victor -n "__fish_victor_needs_command" -f -a "completions" -d 'Print shell completions (or write every shell\'s with --dir)'
complete -c victor -n "__fish_victor_needs_command" -f -a "man" -d 'Print the manual page (or write all of them with --dir)'
complete -c victor -n "__fish_victor_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand serve" -l host -d 'Address to listen on [default: 127.0.0.1]. Anything but loopback needs an API key' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l port -d 'Port to listen on; 0 picks a free one [default: 8765]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l data-dir -d 'Where the database lives [default: the platform\'s data dir, e.g. ~/.local/share/victor]' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l store -d 'Where tasks and their logs are kept: sqlite://PATH, PATH the database file [default: victor.db in the data dir]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l ready-file -d 'Once listening, write where to FILE as JSON (`url`, `socket`, `fingerprint`, `pid`), for a program that starts the server with --port 0; removed when the server stops' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-concurrent -d 'Tasks running at once; the rest wait in a queue [default: 4]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l label -d 'A label this node advertises to the nodes sharing its store (repeatable): tasks started with `--require LABEL` run only on nodes that have it' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l lease-secs -d 'Seconds this node\'s lease lasts in a shared store: a node silent that long counts as gone, and the others mark its running tasks interrupted [default: 15]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l api-key -d 'Require this key from every client (`Authorization: Bearer KEY`). Also read from VICTOR_SERVER_API_KEY (seed 000\'s name)' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l log-format -d 'Log as text for people or JSON lines for machines [default: text]' -r -f -a "text\t''
json\t''"
complete -c victor -n "__fish_victor_using_subcommand serve" -l heartbeat-secs -d 'Seconds between heartbeat events on every open stream [default: 5]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l kill-grace-secs -d 'Seconds between SIGTERM and SIGKILL when a task is cancelled or times out [default: 5]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l shutdown-grace-secs -d 'Seconds running tasks get to stop when the server shuts down [default: 5]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-output-bytes -d 'Output bytes kept per task before a `truncated` event [default: 67108864]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-queued -d 'Tasks waiting in the queue before new ones are refused with 503 [default: 100000]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l cors-origin -d 'A web origin allowed to call the API from a browser (repeatable; CORS is off without one): --cors-origin http://localhost:5173' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l cors-origin-regex -d 'Web origins allowed to call the API, as a regular expression over the whole origin: \'http://localhost:\\d+\'' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-body-bytes -d 'Largest request body accepted [default: 1048576]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-ws-message-bytes -d 'Largest WebSocket message a client may send [default: 32768]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-connections -d 'Open connections before new ones are refused with 503 [default: 4096]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-pending-per-address -d 'Connections from one client address that have not yet completed an authenticated request; more get 503, so one address cannot take every connection. At most half of --max-connections [default: 128]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l header-timeout-secs -d 'Seconds a client has to send a whole request head, from when its connection opens or its previous response ends; then the connection is closed. So also how long a kept-alive connection may sit idle [default: 10]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l body-timeout-secs -d 'Seconds a request body may stop arriving before the request gets 408 [default: 10]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l default-cwd -d 'Where a task runs when its request names no directory. `victor task` on the server\'s own machine sends its current directory [default: the directory victor serve was started in]' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l rate-limit -d 'Requests per second per client address and per key over TCP; 0 turns limits off [default: 200]. The Unix socket is not limited' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l rate-burst -d 'Requests allowed in a burst above the rate before 429 [default: 400]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l session-ttl-secs -d 'Seconds a session token stays valid [default: 86400]. Also read from VICTOR_SERVER_SESSION_TTL_SECONDS (seed 000\'s name)' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l session-idle-secs -d 'Seconds a session may sit unused before it ends [default: 3600]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-sessions -d 'Sessions at once before new ones are refused with 429 [default: 100]. Also read from VICTOR_SERVER_MAX_SESSIONS (seed 000\'s name)' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l tls-cert -d 'Serve HTTPS with this PEM certificate chain instead (needs --tls-key)' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l tls-key -d 'The PEM private key of --tls-cert' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-max-payload-bytes -d 'Largest diagram source a render accepts; more is refused with 413 [default: 20000]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-timeout-secs -d 'Seconds a render may take; then its tool\'s whole process group is killed and the answer is 504 [default: 10]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-max-concurrency -d 'Renders running at once, and warm PlantUML processes kept [default: 2]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-max-queue -d 'Renders waiting for a free slot before more are refused with 503 [default: 32]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-max-output-bytes -d 'Largest SVG a render may produce [default: 10485760]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-prewarm -d 'Start the warm PlantUML processes with the server (false: at the first PlantUML render) [default: true]' -r -f -a "true\t''
false\t''"
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-cache-max-bytes -d 'SVG bytes of rendered diagrams kept in DATA_DIR/render-cache; past it the least recently used are deleted, and 0 keeps none on disk [default: 268435456]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l provider -d 'An LLM provider as NAME=KIND:URL[#MODEL], KIND one of ollama, openai, anthropic (repeatable; added to config.toml\'s [providers.NAME] tables): --provider gpt=openai:https://api.openai.com/v1#gpt-4o-mini. Keys come from OPENAI_API_KEY and ANTHROPIC_API_KEY. Without any provider: Ollama on this machine' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l default-provider -d 'The provider chats use when they name none [default: the first by name]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l llm-first-byte-timeout-secs -d 'Seconds to wait for a provider\'s first byte; local models load slowly [default: 300]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l llm-idle-timeout-secs -d 'Seconds a streaming reply may go silent before it fails [default: 120]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l llm-retries -d 'Times a connection to a provider is retried before it counts as unreachable [default: 3]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l workspace-root -d 'A directory agents may work in, with everything below it (repeatable) [default: the home directory]' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l approval-timeout-secs -d 'Seconds an agent\'s tool call waits for a person\'s approval [default: 600]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l on-unanswered -d 'What an approval nobody answers in time comes to: deny (the agent is told and goes on), wait (for ever) or fail (the task) [default: deny]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l default-kernel -d 'The Jupyter kernel an interpreter session runs when it names none [default: python3]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l kernel-idle-secs -d 'Seconds an interpreter session may go unused before it is closed; 0 keeps sessions until they are closed [default: 3600]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-kernels -d 'Interpreter sessions open at once; more are refused with 503 [default: 32]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l max-kernels-per-client -d 'Interpreter sessions open at once for one client; more are refused with 429 [default: 8]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l session-warm-pool -d 'Kernels of the default kernel kept started ahead (a warm pool), so that a new session in the server\'s directory is ready at once; refilled in the background [default: 0]' -r
complete -c victor -n "__fish_victor_using_subcommand serve" -l task-workspaces -d 'Where a task started through seed 001\'s `POST /tasks` gets a new directory of its own [default: workspaces in the data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand serve" -l tls -d 'Serve HTTPS and WSS with a self-signed certificate, made on first use and kept in DATA_DIR/tls; clients pin its fingerprint, which the server prints'
complete -c victor -n "__fish_victor_using_subcommand serve" -l render-unsafe -d 'Let diagrams include files and reach URLs (PlantUML !include, Graphviz image=, d2 icons). Only for a server whose every user may read its files'
complete -c victor -n "__fish_victor_using_subcommand serve" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand serve" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "start" -d 'Start a task and print its id'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "run" -d 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "list" -d 'List tasks, newest first'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "show" -d 'Show one task'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "logs" -d 'Print a task\'s output (with --json, its events as NDJSON)'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "wait" -d 'Wait for a task to end and exit with its exit code'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "cancel" -d 'Cancel a task: SIGTERM, then SIGKILL after the server\'s grace period'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "pause" -d 'Pause a running task (SIGSTOP to its process group)'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "resume" -d 'Resume a paused task (SIGCONT)'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "input" -d 'Write to a task\'s stdin: TEXT and a newline, or `-` for this command\'s own stdin'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "rm" -d 'Delete a finished task and its events'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "guide" -d 'Tell a running agent something; it reads it before its next model call'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "approvals" -d 'List the agents\' tool calls waiting for approval (with --all, answered ones too)'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "approve" -d 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "checkpoints" -d 'List an agent\'s checkpoints: the files each change touched, saved before it'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "rollback" -d 'Put an agent\'s workspace back as it was before a checkpoint\'s change (pause it first while it runs)'
complete -c victor -n "__fish_victor_using_subcommand task; and not __fish_seen_subcommand_from start run list show logs wait cancel pause resume input rm guide approvals approve checkpoints rollback help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l name -d 'A name to recognise the task by' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l cwd -d 'Working directory on the server [default: this directory when the server runs on this machine, else the server\'s --default-cwd]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -s e -l env -d 'Environment variable for the task (repeatable)' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l timeout -d 'Stop the task after this long running: 90, 90s, 5m, 1h' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l priority -d 'Higher runs first when tasks queue' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l require -d 'Run only on a node that has this label (`victor serve --label`; repeatable): --require gpu' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l stdin -d 'Feed this file to the task\'s stdin (`-`: this command\'s stdin), then close it' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l idempotency-key -d 'Retry-safe start: the same key returns the task the first call started' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l agent -d 'Start an agent with this prompt instead of a command: a model that works in --workspace with tools (read, search, edit, run commands), asking before it changes files or runs commands' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l workspace -d 'The agent\'s workspace on the server [default: this directory]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l mode -d 'build (changes files, runs commands), plan or explore (only read) [default: build]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l provider -d 'The agent\'s provider, by the server\'s name for it' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l model -d 'The agent\'s model [default: the provider\'s]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l max-steps -d 'Model calls the agent may make [default: 50]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l approve -d 'What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l shell -d 'Run the command with /bin/sh -c (automatic for a single argument with spaces)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l name -d 'A name to recognise the task by' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l cwd -d 'Working directory on the server [default: this directory when the server runs on this machine, else the server\'s --default-cwd]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -s e -l env -d 'Environment variable for the task (repeatable)' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l timeout -d 'Stop the task after this long running: 90, 90s, 5m, 1h' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l priority -d 'Higher runs first when tasks queue' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l require -d 'Run only on a node that has this label (`victor serve --label`; repeatable): --require gpu' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l stdin -d 'Feed this file to the task\'s stdin (`-`: this command\'s stdin), then close it' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l idempotency-key -d 'Retry-safe start: the same key returns the task the first call started' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l agent -d 'Start an agent with this prompt instead of a command: a model that works in --workspace with tools (read, search, edit, run commands), asking before it changes files or runs commands' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l workspace -d 'The agent\'s workspace on the server [default: this directory]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l mode -d 'build (changes files, runs commands), plan or explore (only read) [default: build]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l provider -d 'The agent\'s provider, by the server\'s name for it' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l model -d 'The agent\'s model [default: the provider\'s]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l max-steps -d 'Model calls the agent may make [default: 50]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l approve -d 'What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l shell -d 'Run the command with /bin/sh -c (automatic for a single argument with spaces)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l detach -d 'Ctrl-C leaves the task running instead of cancelling it'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l state -d 'Only tasks in these states (comma-separated: running,queued)' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l limit -d 'At most this many tasks' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -l after -d 'Only events after this seq (Ctrl-C on -f prints the one to go on from)' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -s f -l follow -d 'Keep following until the task ends'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from logs" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -l timeout -d 'Give up after this long (exit 75): 90, 90s, 5m, 1h' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from wait" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from cancel" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -s n -l no-newline -d 'Do not add a newline after TEXT'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -l eof -d 'Close the task\'s stdin afterwards (it sees end of file)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from input" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rm" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from guide" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -l all -d 'Answered and expired ones too'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approvals" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l reason -d 'Why, for the agent (with --deny)' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l always
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l deny
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l cancel
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from approve" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from checkpoints" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start a task and print its id'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "run" -d 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "list" -d 'List tasks, newest first'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one task'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "logs" -d 'Print a task\'s output (with --json, its events as NDJSON)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Wait for a task to end and exit with its exit code'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a task: SIGTERM, then SIGKILL after the server\'s grace period'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Pause a running task (SIGSTOP to its process group)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a paused task (SIGCONT)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "input" -d 'Write to a task\'s stdin: TEXT and a newline, or `-` for this command\'s own stdin'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Delete a finished task and its events'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "guide" -d 'Tell a running agent something; it reads it before its next model call'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "approvals" -d 'List the agents\' tool calls waiting for approval (with --all, answered ones too)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "approve" -d 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "checkpoints" -d 'List an agent\'s checkpoints: the files each change touched, saved before it'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Put an agent\'s workspace back as it was before a checkpoint\'s change (pause it first while it runs)'
complete -c victor -n "__fish_victor_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand watch" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand watch" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand watch" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand watch" -l scrollback -d 'Lines of the open log kept in memory; older ones are read from the server again when you scroll to them' -r
complete -c victor -n "__fish_victor_using_subcommand watch" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c victor -n "__fish_victor_using_subcommand watch" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand chat" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand chat" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand chat" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand chat" -l model -d 'The model to use (the conversation\'s, or the provider\'s default, when not given)' -r
complete -c victor -n "__fish_victor_using_subcommand chat" -l provider -d 'The provider to use, by the name the server gives it (`victor chat` then `/provider` lists them)' -r
complete -c victor -n "__fish_victor_using_subcommand chat" -l system -d 'A system prompt for a new conversation' -r
complete -c victor -n "__fish_victor_using_subcommand chat" -l session -d 'Continue the conversation with this id' -r
complete -c victor -n "__fish_victor_using_subcommand chat" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand chat" -l json -d 'Print the reply as one JSON object once it is complete, instead of streaming it'
complete -c victor -n "__fish_victor_using_subcommand chat" -l continue -d 'Continue the most recently used conversation'
complete -c victor -n "__fish_victor_using_subcommand chat" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c victor -n "__fish_victor_using_subcommand chat" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand repl" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand repl" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand repl" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand repl" -l kernel -d 'The Jupyter kernel of a new session (`victor repl --kernels` lists them) [default: the server\'s, python3]' -r
complete -c victor -n "__fish_victor_using_subcommand repl" -l session -d 'Use this open session (its variables are there) instead of starting one' -r
complete -c victor -n "__fish_victor_using_subcommand repl" -l exec -d 'Run this code and exit (`-`: read it from stdin): 0 when it ran, 1 when it raised' -r
complete -c victor -n "__fish_victor_using_subcommand repl" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand repl" -l keep -d 'Keep the session this command started open when it exits, and print its id'
complete -c victor -n "__fish_victor_using_subcommand repl" -l json -d 'Print the execution\'s events as NDJSON instead of its output'
complete -c victor -n "__fish_victor_using_subcommand repl" -l kernels -d 'List the kernels installed on the server'
complete -c victor -n "__fish_victor_using_subcommand repl" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c victor -n "__fish_victor_using_subcommand repl" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -f -a "create" -d 'Make a key and print it (the only time it is shown; the server keeps only its hash)'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -f -a "list" -d 'List the keys: ids, names, scopes, last use (never the keys themselves)'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -f -a "revoke" -d 'Revoke a key by id (or by a name only one key has); its session tokens stop working too'
complete -c victor -n "__fish_victor_using_subcommand keys; and not __fish_seen_subcommand_from create list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l scope -d 'read: list, show and watch tasks; control: also start and steer them; admin: also manage keys' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l name -d 'Whose key it is or what it is for' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l json -d 'Print JSON for scripts instead of text for people'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "create" -d 'Make a key and print it (the only time it is shown; the server keeps only its hash)'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the keys: ids, names, scopes, last use (never the keys themselves)'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a key by id (or by a name only one key has); its session tokens stop working too'
complete -c victor -n "__fish_victor_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -f -a "add" -d 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers'
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -f -a "list" -d 'List the remotes (keys are never shown, only whether one is set)'
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -f -a "remove" -d 'Forget a remote'
complete -c victor -n "__fish_victor_using_subcommand remote; and not __fish_seen_subcommand_from add list remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from add" -l key -d 'The server\'s API key (stored in remotes.toml, readable by you only)' -r
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from add" -l fingerprint -d 'The fingerprint `victor serve --tls` printed: trust exactly that certificate' -r
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from add" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from add" -s y -l yes -d 'Trust the certificate the server presents without asking'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from list" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from list" -l json -d 'Print JSON for scripts instead of a table'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from remove" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from help" -f -a "add" -d 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the remotes (keys are never shown, only whether one is set)'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Forget a remote'
complete -c victor -n "__fish_victor_using_subcommand remote; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand render" -s o -l output -d 'Where the SVG goes: a file (`-` for stdout) for one diagram, a directory for several [default: beside each file, with the extension .svg]' -r -F
complete -c victor -n "__fish_victor_using_subcommand render" -s t -l type -d 'The diagram type when the extension does not say: graphviz (dot), plantuml, mermaid, d2, drawio' -r
complete -c victor -n "__fish_victor_using_subcommand render" -s K -l engine -d 'Graphviz layout engine, for the Graphviz files among FILE (the others ignore it, with a warning; with no Graphviz file at all it is an error)' -r -f -a "dot\t''
neato\t''
fdp\t''
circo\t''
twopi\t''
sfdp\t''
osage\t''
patchwork\t''"
complete -c victor -n "__fish_victor_using_subcommand render" -l backend -d 'Which renderer: the installed tool, victor\'s built-in one, or auto (the tool when it is installed)' -r
complete -c victor -n "__fish_victor_using_subcommand render" -l server -d 'Render through a victor server: its URL or the name of a remote; alone, the one in VICTOR_SERVER or config.toml [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand render" -l api-key -d 'API key, when the server requires one' -r
complete -c victor -n "__fish_victor_using_subcommand render" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key' -r -F
complete -c victor -n "__fish_victor_using_subcommand render" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand render" -l local -d 'Render in this process [the default unless VICTOR_SERVER is set]'
complete -c victor -n "__fish_victor_using_subcommand render" -s w -l watch -d 'Re-render each file when it changes, until Ctrl-C'
complete -c victor -n "__fish_victor_using_subcommand render" -l unsafe -d 'With --local: let diagrams include files and reach URLs (safe mode off)'
complete -c victor -n "__fish_victor_using_subcommand render" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand render" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand mcp" -l server -d 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]' -r
complete -c victor -n "__fish_victor_using_subcommand mcp" -l api-key -d 'API key, when the server requires one (overrides a remote\'s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine\'s server may be using' -r
complete -c victor -n "__fish_victor_using_subcommand mcp" -l data-dir -d 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform\'s data dir]' -r -F
complete -c victor -n "__fish_victor_using_subcommand mcp" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand mcp" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c victor -n "__fish_victor_using_subcommand mcp" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand completions" -l dir -d 'Write the completions of every shell into this directory' -r -F
complete -c victor -n "__fish_victor_using_subcommand completions" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand completions" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand completions" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand man" -l dir -d 'Write a page per command into this directory' -r -F
complete -c victor -n "__fish_victor_using_subcommand man" -l config -d 'Settings file (default: config.toml in the platform\'s config dir, e.g. ~/.config/victor)' -r -F
complete -c victor -n "__fish_victor_using_subcommand man" -s h -l help -d 'Print help'
complete -c victor -n "__fish_victor_using_subcommand man" -s V -l version -d 'Print version'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "serve" -d 'Run the task server on this machine'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "task" -d 'Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "watch" -d 'Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "chat" -d 'Chat with the server\'s models: interactively on a terminal, or one question for scripts'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "repl" -d 'Run code in an interpreter session (a Jupyter kernel on the server that keeps its state)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "keys" -d 'Create, list and revoke scoped API keys (read, control, admin)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "remote" -d 'Keep servers on other machines under a name, pinned to their TLS certificate'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "render" -d 'Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "mcp" -d 'Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a remote\'s name)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "completions" -d 'Print shell completions (or write every shell\'s with --dir)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "man" -d 'Print the manual page (or write all of them with --dir)'
complete -c victor -n "__fish_victor_using_subcommand help; and not __fish_seen_subcommand_from serve task watch chat repl keys remote render mcp completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "start" -d 'Start a task and print its id'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "run" -d 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "list" -d 'List tasks, newest first'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "show" -d 'Show one task'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "logs" -d 'Print a task\'s output (with --json, its events as NDJSON)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "wait" -d 'Wait for a task to end and exit with its exit code'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "cancel" -d 'Cancel a task: SIGTERM, then SIGKILL after the server\'s grace period'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "pause" -d 'Pause a running task (SIGSTOP to its process group)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "resume" -d 'Resume a paused task (SIGCONT)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "input" -d 'Write to a task\'s stdin: TEXT and a newline, or `-` for this command\'s own stdin'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "rm" -d 'Delete a finished task and its events'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "guide" -d 'Tell a running agent something; it reads it before its next model call'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "approvals" -d 'List the agents\' tool calls waiting for approval (with --all, answered ones too)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "approve" -d 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "checkpoints" -d 'List an agent\'s checkpoints: the files each change touched, saved before it'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "rollback" -d 'Put an agent\'s workspace back as it was before a checkpoint\'s change (pause it first while it runs)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "create" -d 'Make a key and print it (the only time it is shown; the server keeps only its hash)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "list" -d 'List the keys: ids, names, scopes, last use (never the keys themselves)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "revoke" -d 'Revoke a key by id (or by a name only one key has); its session tokens stop working too'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from remote" -f -a "add" -d 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from remote" -f -a "list" -d 'List the remotes (keys are never shown, only whether one is set)'
complete -c victor -n "__fish_victor_using_subcommand help; and __fish_seen_subcommand_from remote" -f -a "remove" -d 'Forget a remote'
