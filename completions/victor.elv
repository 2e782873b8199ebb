
use builtin;
use str;

set edit:completion:arg-completer[victor] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'victor'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'victor'= {
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the task server on this machine'
            cand task 'Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes)'
            cand watch 'Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped)'
            cand chat 'Chat with the server''s models: interactively on a terminal, or one question for scripts'
            cand repl 'Run code in an interpreter session (a Jupyter kernel on the server that keeps its state)'
            cand keys 'Create, list and revoke scoped API keys (read, control, admin)'
            cand remote 'Keep servers on other machines under a name, pinned to their TLS certificate'
            cand render 'Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server'
            cand mcp 'Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a remote''s name)'
            cand completions 'Print shell completions (or write every shell''s with --dir)'
            cand man 'Print the manual page (or write all of them with --dir)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;serve'= {
            cand --host 'Address to listen on [default: 127.0.0.1]. Anything but loopback needs an API key'
            cand --port 'Port to listen on; 0 picks a free one [default: 8765]'
            cand --data-dir 'Where the database lives [default: the platform''s data dir, e.g. ~/.local/share/victor]'
            cand --store 'Where tasks and their logs are kept: sqlite://PATH, PATH the database file [default: victor.db in the data dir]'
            cand --ready-file 'Once listening, write where to FILE as JSON (`url`, `socket`, `fingerprint`, `pid`), for a program that starts the server with --port 0; removed when the server stops'
            cand --max-concurrent 'Tasks running at once; the rest wait in a queue [default: 4]'
            cand --label 'A label this node advertises to the nodes sharing its store (repeatable): tasks started with `--require LABEL` run only on nodes that have it'
            cand --lease-secs 'Seconds this node''s lease lasts in a shared store: a node silent that long counts as gone, and the others mark its running tasks interrupted [default: 15]'
            cand --api-key 'Require this key from every client (`Authorization: Bearer KEY`). Also read from VICTOR_SERVER_API_KEY (seed 000''s name)'
            cand --log-format 'Log as text for people or JSON lines for machines [default: text]'
            cand --heartbeat-secs 'Seconds between heartbeat events on every open stream [default: 5]'
            cand --kill-grace-secs 'Seconds between SIGTERM and SIGKILL when a task is cancelled or times out [default: 5]'
            cand --shutdown-grace-secs 'Seconds running tasks get to stop when the server shuts down [default: 5]'
            cand --max-output-bytes 'Output bytes kept per task before a `truncated` event [default: 67108864]'
            cand --max-queued 'Tasks waiting in the queue before new ones are refused with 503 [default: 100000]'
            cand --cors-origin 'A web origin allowed to call the API from a browser (repeatable; CORS is off without one): --cors-origin http://localhost:5173'
            cand --cors-origin-regex 'Web origins allowed to call the API, as a regular expression over the whole origin: ''http://localhost:\d+'''
            cand --max-body-bytes 'Largest request body accepted [default: 1048576]'
            cand --max-ws-message-bytes 'Largest WebSocket message a client may send [default: 32768]'
            cand --max-connections 'Open connections before new ones are refused with 503 [default: 4096]'
            cand --max-pending-per-address 'Connections from one client address that have not yet completed an authenticated request; more get 503, so one address cannot take every connection. At most half of --max-connections [default: 128]'
            cand --header-timeout-secs 'Seconds a client has to send a whole request head, from when its connection opens or its previous response ends; then the connection is closed. So also how long a kept-alive connection may sit idle [default: 10]'
            cand --body-timeout-secs 'Seconds a request body may stop arriving before the request gets 408 [default: 10]'
            cand --default-cwd 'Where a task runs when its request names no directory. `victor task` on the server''s own machine sends its current directory [default: the directory victor serve was started in]'
            cand --rate-limit 'Requests per second per client address and per key over TCP; 0 turns limits off [default: 200]. The Unix socket is not limited'
            cand --rate-burst 'Requests allowed in a burst above the rate before 429 [default: 400]'
            cand --session-ttl-secs 'Seconds a session token stays valid [default: 86400]. Also read from VICTOR_SERVER_SESSION_TTL_SECONDS (seed 000''s name)'
            cand --session-idle-secs 'Seconds a session may sit unused before it ends [default: 3600]'
            cand --max-sessions 'Sessions at once before new ones are refused with 429 [default: 100]. Also read from VICTOR_SERVER_MAX_SESSIONS (seed 000''s name)'
            cand --tls-cert 'Serve HTTPS with this PEM certificate chain instead (needs --tls-key)'
            cand --tls-key 'The PEM private key of --tls-cert'
            cand --render-max-payload-bytes 'Largest diagram source a render accepts; more is refused with 413 [default: 20000]'
            cand --render-timeout-secs 'Seconds a render may take; then its tool''s whole process group is killed and the answer is 504 [default: 10]'
            cand --render-max-concurrency 'Renders running at once, and warm PlantUML processes kept [default: 2]'
            cand --render-max-queue 'Renders waiting for a free slot before more are refused with 503 [default: 32]'
            cand --render-max-output-bytes 'Largest SVG a render may produce [default: 10485760]'
            cand --render-prewarm 'Start the warm PlantUML processes with the server (false: at the first PlantUML render) [default: true]'
            cand --render-cache-max-bytes 'SVG bytes of rendered diagrams kept in DATA_DIR/render-cache; past it the least recently used are deleted, and 0 keeps none on disk [default: 268435456]'
            cand --provider 'An LLM provider as NAME=KIND:URL[#MODEL], KIND one of ollama, openai, anthropic (repeatable; added to config.toml''s [providers.NAME] tables): --provider gpt=openai:https://api.openai.com/v1#gpt-4o-mini. Keys come from OPENAI_API_KEY and ANTHROPIC_API_KEY. Without any provider: Ollama on this machine'
            cand --default-provider 'The provider chats use when they name none [default: the first by name]'
            cand --llm-first-byte-timeout-secs 'Seconds to wait for a provider''s first byte; local models load slowly [default: 300]'
            cand --llm-idle-timeout-secs 'Seconds a streaming reply may go silent before it fails [default: 120]'
            cand --llm-retries 'Times a connection to a provider is retried before it counts as unreachable [default: 3]'
            cand --workspace-root 'A directory agents may work in, with everything below it (repeatable) [default: the home directory]'
            cand --approval-timeout-secs 'Seconds an agent''s tool call waits for a person''s approval [default: 600]'
            cand --on-unanswered 'What an approval nobody answers in time comes to: deny (the agent is told and goes on), wait (for ever) or fail (the task) [default: deny]'
            cand --default-kernel 'The Jupyter kernel an interpreter session runs when it names none [default: python3]'
            cand --kernel-idle-secs 'Seconds an interpreter session may go unused before it is closed; 0 keeps sessions until they are closed [default: 3600]'
            cand --max-kernels 'Interpreter sessions open at once; more are refused with 503 [default: 32]'
            cand --max-kernels-per-client 'Interpreter sessions open at once for one client; more are refused with 429 [default: 8]'
            cand --session-warm-pool 'Kernels of the default kernel kept started ahead (a warm pool), so that a new session in the server''s directory is ready at once; refilled in the background [default: 0]'
            cand --task-workspaces 'Where a task started through seed 001''s `POST /tasks` gets a new directory of its own [default: workspaces in the data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --tls 'Serve HTTPS and WSS with a self-signed certificate, made on first use and kept in DATA_DIR/tls; clients pin its fingerprint, which the server prints'
            cand --render-unsafe 'Let diagrams include files and reach URLs (PlantUML !include, Graphviz image=, d2 icons). Only for a server whose every user may read its files'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand start 'Start a task and print its id'
            cand run 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it'
            cand list 'List tasks, newest first'
            cand show 'Show one task'
            cand logs 'Print a task''s output (with --json, its events as NDJSON)'
            cand wait 'Wait for a task to end and exit with its exit code'
            cand cancel 'Cancel a task: SIGTERM, then SIGKILL after the server''s grace period'
            cand pause 'Pause a running task (SIGSTOP to its process group)'
            cand resume 'Resume a paused task (SIGCONT)'
            cand input 'Write to a task''s stdin: TEXT and a newline, or `-` for this command''s own stdin'
            cand rm 'Delete a finished task and its events'
            cand guide 'Tell a running agent something; it reads it before its next model call'
            cand approvals 'List the agents'' tool calls waiting for approval (with --all, answered ones too)'
            cand approve 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task'
            cand checkpoints 'List an agent''s checkpoints: the files each change touched, saved before it'
            cand rollback 'Put an agent''s workspace back as it was before a checkpoint''s change (pause it first while it runs)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;task;start'= {
            cand --name 'A name to recognise the task by'
            cand --cwd 'Working directory on the server [default: this directory when the server runs on this machine, else the server''s --default-cwd]'
            cand -e 'Environment variable for the task (repeatable)'
            cand --env 'Environment variable for the task (repeatable)'
            cand --timeout 'Stop the task after this long running: 90, 90s, 5m, 1h'
            cand --priority 'Higher runs first when tasks queue'
            cand --require 'Run only on a node that has this label (`victor serve --label`; repeatable): --require gpu'
            cand --stdin 'Feed this file to the task''s stdin (`-`: this command''s stdin), then close it'
            cand --idempotency-key 'Retry-safe start: the same key returns the task the first call started'
            cand --agent 'Start an agent with this prompt instead of a command: a model that works in --workspace with tools (read, search, edit, run commands), asking before it changes files or runs commands'
            cand --workspace 'The agent''s workspace on the server [default: this directory]'
            cand --mode 'build (changes files, runs commands), plan or explore (only read) [default: build]'
            cand --provider 'The agent''s provider, by the server''s name for it'
            cand --model 'The agent''s model [default: the provider''s]'
            cand --max-steps 'Model calls the agent may make [default: 50]'
            cand --approve 'What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --shell 'Run the command with /bin/sh -c (automatic for a single argument with spaces)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;run'= {
            cand --name 'A name to recognise the task by'
            cand --cwd 'Working directory on the server [default: this directory when the server runs on this machine, else the server''s --default-cwd]'
            cand -e 'Environment variable for the task (repeatable)'
            cand --env 'Environment variable for the task (repeatable)'
            cand --timeout 'Stop the task after this long running: 90, 90s, 5m, 1h'
            cand --priority 'Higher runs first when tasks queue'
            cand --require 'Run only on a node that has this label (`victor serve --label`; repeatable): --require gpu'
            cand --stdin 'Feed this file to the task''s stdin (`-`: this command''s stdin), then close it'
            cand --idempotency-key 'Retry-safe start: the same key returns the task the first call started'
            cand --agent 'Start an agent with this prompt instead of a command: a model that works in --workspace with tools (read, search, edit, run commands), asking before it changes files or runs commands'
            cand --workspace 'The agent''s workspace on the server [default: this directory]'
            cand --mode 'build (changes files, runs commands), plan or explore (only read) [default: build]'
            cand --provider 'The agent''s provider, by the server''s name for it'
            cand --model 'The agent''s model [default: the provider''s]'
            cand --max-steps 'Model calls the agent may make [default: 50]'
            cand --approve 'What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --shell 'Run the command with /bin/sh -c (automatic for a single argument with spaces)'
            cand --detach 'Ctrl-C leaves the task running instead of cancelling it'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;list'= {
            cand --state 'Only tasks in these states (comma-separated: running,queued)'
            cand --limit 'At most this many tasks'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;show'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;logs'= {
            cand --after 'Only events after this seq (Ctrl-C on -f prints the one to go on from)'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -f 'Keep following until the task ends'
            cand --follow 'Keep following until the task ends'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;wait'= {
            cand --timeout 'Give up after this long (exit 75): 90, 90s, 5m, 1h'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;cancel'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;pause'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;resume'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;input'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -n 'Do not add a newline after TEXT'
            cand --no-newline 'Do not add a newline after TEXT'
            cand --eof 'Close the task''s stdin afterwards (it sees end of file)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;rm'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;guide'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;approvals'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --all 'Answered and expired ones too'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;approve'= {
            cand --reason 'Why, for the agent (with --deny)'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --always 'always'
            cand --deny 'deny'
            cand --cancel 'cancel'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;checkpoints'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;rollback'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;task;help'= {
            cand start 'Start a task and print its id'
            cand run 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it'
            cand list 'List tasks, newest first'
            cand show 'Show one task'
            cand logs 'Print a task''s output (with --json, its events as NDJSON)'
            cand wait 'Wait for a task to end and exit with its exit code'
            cand cancel 'Cancel a task: SIGTERM, then SIGKILL after the server''s grace period'
            cand pause 'Pause a running task (SIGSTOP to its process group)'
            cand resume 'Resume a paused task (SIGCONT)'
            cand input 'Write to a task''s stdin: TEXT and a newline, or `-` for this command''s own stdin'
            cand rm 'Delete a finished task and its events'
            cand guide 'Tell a running agent something; it reads it before its next model call'
            cand approvals 'List the agents'' tool calls waiting for approval (with --all, answered ones too)'
            cand approve 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task'
            cand checkpoints 'List an agent''s checkpoints: the files each change touched, saved before it'
            cand rollback 'Put an agent''s workspace back as it was before a checkpoint''s change (pause it first while it runs)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;task;help;start'= {
        }
        &'victor;task;help;run'= {
        }
        &'victor;task;help;list'= {
        }
        &'victor;task;help;show'= {
        }
        &'victor;task;help;logs'= {
        }
        &'victor;task;help;wait'= {
        }
        &'victor;task;help;cancel'= {
        }
        &'victor;task;help;pause'= {
        }
        &'victor;task;help;resume'= {
        }
        &'victor;task;help;input'= {
        }
        &'victor;task;help;rm'= {
        }
        &'victor;task;help;guide'= {
        }
        &'victor;task;help;approvals'= {
        }
        &'victor;task;help;approve'= {
        }
        &'victor;task;help;checkpoints'= {
        }
        &'victor;task;help;rollback'= {
        }
        &'victor;task;help;help'= {
        }
        &'victor;watch'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --scrollback 'Lines of the open log kept in memory; older ones are read from the server again when you scroll to them'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;chat'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --model 'The model to use (the conversation''s, or the provider''s default, when not given)'
            cand --provider 'The provider to use, by the name the server gives it (`victor chat` then `/provider` lists them)'
            cand --system 'A system prompt for a new conversation'
            cand --session 'Continue the conversation with this id'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print the reply as one JSON object once it is complete, instead of streaming it'
            cand --continue 'Continue the most recently used conversation'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;repl'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --kernel 'The Jupyter kernel of a new session (`victor repl --kernels` lists them) [default: the server''s, python3]'
            cand --session 'Use this open session (its variables are there) instead of starting one'
            cand --exec 'Run this code and exit (`-`: read it from stdin): 0 when it ran, 1 when it raised'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --keep 'Keep the session this command started open when it exits, and print its id'
            cand --json 'Print the execution''s events as NDJSON instead of its output'
            cand --kernels 'List the kernels installed on the server'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;keys'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Make a key and print it (the only time it is shown; the server keeps only its hash)'
            cand list 'List the keys: ids, names, scopes, last use (never the keys themselves)'
            cand revoke 'Revoke a key by id (or by a name only one key has); its session tokens stop working too'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;keys;create'= {
            cand --scope 'read: list, show and watch tasks; control: also start and steer them; admin: also manage keys'
            cand --name 'Whose key it is or what it is for'
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;keys;list'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;keys;revoke'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of text for people'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;keys;help'= {
            cand create 'Make a key and print it (the only time it is shown; the server keeps only its hash)'
            cand list 'List the keys: ids, names, scopes, last use (never the keys themselves)'
            cand revoke 'Revoke a key by id (or by a name only one key has); its session tokens stop working too'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;keys;help;create'= {
        }
        &'victor;keys;help;list'= {
        }
        &'victor;keys;help;revoke'= {
        }
        &'victor;keys;help;help'= {
        }
        &'victor;remote'= {
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers'
            cand list 'List the remotes (keys are never shown, only whether one is set)'
            cand remove 'Forget a remote'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;remote;add'= {
            cand --key 'The server''s API key (stored in remotes.toml, readable by you only)'
            cand --fingerprint 'The fingerprint `victor serve --tls` printed: trust exactly that certificate'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -y 'Trust the certificate the server presents without asking'
            cand --yes 'Trust the certificate the server presents without asking'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;remote;list'= {
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --json 'Print JSON for scripts instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;remote;remove'= {
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;remote;help'= {
            cand add 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers'
            cand list 'List the remotes (keys are never shown, only whether one is set)'
            cand remove 'Forget a remote'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;remote;help;add'= {
        }
        &'victor;remote;help;list'= {
        }
        &'victor;remote;help;remove'= {
        }
        &'victor;remote;help;help'= {
        }
        &'victor;render'= {
            cand -o 'Where the SVG goes: a file (`-` for stdout) for one diagram, a directory for several [default: beside each file, with the extension .svg]'
            cand --output 'Where the SVG goes: a file (`-` for stdout) for one diagram, a directory for several [default: beside each file, with the extension .svg]'
            cand -t 'The diagram type when the extension does not say: graphviz (dot), plantuml, mermaid, d2, drawio'
            cand --type 'The diagram type when the extension does not say: graphviz (dot), plantuml, mermaid, d2, drawio'
            cand -K 'Graphviz layout engine, for the Graphviz files among FILE (the others ignore it, with a warning; with no Graphviz file at all it is an error)'
            cand --engine 'Graphviz layout engine, for the Graphviz files among FILE (the others ignore it, with a warning; with no Graphviz file at all it is an error)'
            cand --backend 'Which renderer: the installed tool, victor''s built-in one, or auto (the tool when it is installed)'
            cand --server 'Render through a victor server: its URL or the name of a remote; alone, the one in VICTOR_SERVER or config.toml [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand --local 'Render in this process [the default unless VICTOR_SERVER is set]'
            cand -w 'Re-render each file when it changes, until Ctrl-C'
            cand --watch 'Re-render each file when it changes, until Ctrl-C'
            cand --unsafe 'With --local: let diagrams include files and reach URLs (safe mode off)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;mcp'= {
            cand --server 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]'
            cand --api-key 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using'
            cand --data-dir 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;completions'= {
            cand --dir 'Write the completions of every shell into this directory'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;man'= {
            cand --dir 'Write a page per command into this directory'
            cand --config 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'victor;help'= {
            cand serve 'Run the task server on this machine'
            cand task 'Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes)'
            cand watch 'Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped)'
            cand chat 'Chat with the server''s models: interactively on a terminal, or one question for scripts'
            cand repl 'Run code in an interpreter session (a Jupyter kernel on the server that keeps its state)'
            cand keys 'Create, list and revoke scoped API keys (read, control, admin)'
            cand remote 'Keep servers on other machines under a name, pinned to their TLS certificate'
            cand render 'Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server'
            cand mcp 'Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a remote''s name)'
            cand completions 'Print shell completions (or write every shell''s with --dir)'
            cand man 'Print the manual page (or write all of them with --dir)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'victor;help;serve'= {
        }
        &'victor;help;task'= {
            cand start 'Start a task and print its id'
            cand run 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it'
            cand list 'List tasks, newest first'
            cand show 'Show one task'
            cand logs 'Print a task''s output (with --json, its events as NDJSON)'
            cand wait 'Wait for a task to end and exit with its exit code'
            cand cancel 'Cancel a task: SIGTERM, then SIGKILL after the server''s grace period'
            cand pause 'Pause a running task (SIGSTOP to its process group)'
            cand resume 'Resume a paused task (SIGCONT)'
            cand input 'Write to a task''s stdin: TEXT and a newline, or `-` for this command''s own stdin'
            cand rm 'Delete a finished task and its events'
            cand guide 'Tell a running agent something; it reads it before its next model call'
            cand approvals 'List the agents'' tool calls waiting for approval (with --all, answered ones too)'
            cand approve 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task'
            cand checkpoints 'List an agent''s checkpoints: the files each change touched, saved before it'
            cand rollback 'Put an agent''s workspace back as it was before a checkpoint''s change (pause it first while it runs)'
        }
        &'victor;help;task;start'= {
        }
        &'victor;help;task;run'= {
        }
        &'victor;help;task;list'= {
        }
        &'victor;help;task;show'= {
        }
        &'victor;help;task;logs'= {
        }
        &'victor;help;task;wait'= {
        }
        &'victor;help;task;cancel'= {
        }
        &'victor;help;task;pause'= {
        }
        &'victor;help;task;resume'= {
        }
        &'victor;help;task;input'= {
        }
        &'victor;help;task;rm'= {
        }
        &'victor;help;task;guide'= {
        }
        &'victor;help;task;approvals'= {
        }
        &'victor;help;task;approve'= {
        }
        &'victor;help;task;checkpoints'= {
        }
        &'victor;help;task;rollback'= {
        }
        &'victor;help;watch'= {
        }
        &'victor;help;chat'= {
        }
        &'victor;help;repl'= {
        }
        &'victor;help;keys'= {
            cand create 'Make a key and print it (the only time it is shown; the server keeps only its hash)'
            cand list 'List the keys: ids, names, scopes, last use (never the keys themselves)'
            cand revoke 'Revoke a key by id (or by a name only one key has); its session tokens stop working too'
        }
        &'victor;help;keys;create'= {
        }
        &'victor;help;keys;list'= {
        }
        &'victor;help;keys;revoke'= {
        }
        &'victor;help;remote'= {
            cand add 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers'
            cand list 'List the remotes (keys are never shown, only whether one is set)'
            cand remove 'Forget a remote'
        }
        &'victor;help;remote;add'= {
        }
        &'victor;help;remote;list'= {
        }
        &'victor;help;remote;remove'= {
        }
        &'victor;help;render'= {
        }
        &'victor;help;mcp'= {
        }
        &'victor;help;completions'= {
        }
        &'victor;help;man'= {
        }
        &'victor;help;help'= {
        }
    ]
    $completions[$command]
}
