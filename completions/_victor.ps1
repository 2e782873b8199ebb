
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'victor' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'victor'
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
        'victor' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the task server on this machine')
            [CompletionResult]::new('task', 'task', [CompletionResultType]::ParameterValue, 'Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes)')
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped)')
            [CompletionResult]::new('chat', 'chat', [CompletionResultType]::ParameterValue, 'Chat with the server''s models: interactively on a terminal, or one question for scripts')
            [CompletionResult]::new('repl', 'repl', [CompletionResultType]::ParameterValue, 'Run code in an interpreter session (a Jupyter kernel on the server that keeps its state)')
            [CompletionResult]::new('keys', 'keys', [CompletionResultType]::ParameterValue, 'Create, list and revoke scoped API keys (read, control, admin)')
            [CompletionResult]::new('remote', 'remote', [CompletionResultType]::ParameterValue, 'Keep servers on other machines under a name, pinned to their TLS certificate')
            [CompletionResult]::new('render', 'render', [CompletionResultType]::ParameterValue, 'Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server')
            [CompletionResult]::new('mcp', 'mcp', [CompletionResultType]::ParameterValue, 'Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a remote''s name)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions (or write every shell''s with --dir)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (or write all of them with --dir)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;serve' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Address to listen on [default: 127.0.0.1]. Anything but loopback needs an API key')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port to listen on; 0 picks a free one [default: 8765]')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Where the database lives [default: the platform''s data dir, e.g. ~/.local/share/victor]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where tasks and their logs are kept: sqlite://PATH, PATH the database file [default: victor.db in the data dir]')
            [CompletionResult]::new('--ready-file', '--ready-file', [CompletionResultType]::ParameterName, 'Once listening, write where to FILE as JSON (`url`, `socket`, `fingerprint`, `pid`), for a program that starts the server with --port 0; removed when the server stops')
            [CompletionResult]::new('--max-concurrent', '--max-concurrent', [CompletionResultType]::ParameterName, 'Tasks running at once; the rest wait in a queue [default: 4]')
            [CompletionResult]::new('--label', '--label', [CompletionResultType]::ParameterName, 'A label this node advertises to the nodes sharing its store (repeatable): tasks started with `--require LABEL` run only on nodes that have it')
            [CompletionResult]::new('--lease-secs', '--lease-secs', [CompletionResultType]::ParameterName, 'Seconds this node''s lease lasts in a shared store: a node silent that long counts as gone, and the others mark its running tasks interrupted [default: 15]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'Require this key from every client (`Authorization: Bearer KEY`). Also read from VICTOR_SERVER_API_KEY (seed 000''s name)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log as text for people or JSON lines for machines [default: text]')
            [CompletionResult]::new('--heartbeat-secs', '--heartbeat-secs', [CompletionResultType]::ParameterName, 'Seconds between heartbeat events on every open stream [default: 5]')
            [CompletionResult]::new('--kill-grace-secs', '--kill-grace-secs', [CompletionResultType]::ParameterName, 'Seconds between SIGTERM and SIGKILL when a task is cancelled or times out [default: 5]')
            [CompletionResult]::new('--shutdown-grace-secs', '--shutdown-grace-secs', [CompletionResultType]::ParameterName, 'Seconds running tasks get to stop when the server shuts down [default: 5]')
            [CompletionResult]::new('--max-output-bytes', '--max-output-bytes', [CompletionResultType]::ParameterName, 'Output bytes kept per task before a `truncated` event [default: 67108864]')
            [CompletionResult]::new('--max-queued', '--max-queued', [CompletionResultType]::ParameterName, 'Tasks waiting in the queue before new ones are refused with 503 [default: 100000]')
            [CompletionResult]::new('--cors-origin', '--cors-origin', [CompletionResultType]::ParameterName, 'A web origin allowed to call the API from a browser (repeatable; CORS is off without one): --cors-origin http://localhost:5173')
            [CompletionResult]::new('--cors-origin-regex', '--cors-origin-regex', [CompletionResultType]::ParameterName, 'Web origins allowed to call the API, as a regular expression over the whole origin: ''http://localhost:\d+''')
            [CompletionResult]::new('--max-body-bytes', '--max-body-bytes', [CompletionResultType]::ParameterName, 'Largest request body accepted [default: 1048576]')
            [CompletionResult]::new('--max-ws-message-bytes', '--max-ws-message-bytes', [CompletionResultType]::ParameterName, 'Largest WebSocket message a client may send [default: 32768]')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Open connections before new ones are refused with 503 [default: 4096]')
            [CompletionResult]::new('--max-pending-per-address', '--max-pending-per-address', [CompletionResultType]::ParameterName, 'Connections from one client address that have not yet completed an authenticated request; more get 503, so one address cannot take every connection. At most half of --max-connections [default: 128]')
            [CompletionResult]::new('--header-timeout-secs', '--header-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds a client has to send a whole request head, from when its connection opens or its previous response ends; then the connection is closed. So also how long a kept-alive connection may sit idle [default: 10]')
            [CompletionResult]::new('--body-timeout-secs', '--body-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds a request body may stop arriving before the request gets 408 [default: 10]')
            [CompletionResult]::new('--default-cwd', '--default-cwd', [CompletionResultType]::ParameterName, 'Where a task runs when its request names no directory. `victor task` on the server''s own machine sends its current directory [default: the directory victor serve was started in]')
            [CompletionResult]::new('--rate-limit', '--rate-limit', [CompletionResultType]::ParameterName, 'Requests per second per client address and per key over TCP; 0 turns limits off [default: 200]. The Unix socket is not limited')
            [CompletionResult]::new('--rate-burst', '--rate-burst', [CompletionResultType]::ParameterName, 'Requests allowed in a burst above the rate before 429 [default: 400]')
            [CompletionResult]::new('--session-ttl-secs', '--session-ttl-secs', [CompletionResultType]::ParameterName, 'Seconds a session token stays valid [default: 86400]. Also read from VICTOR_SERVER_SESSION_TTL_SECONDS (seed 000''s name)')
            [CompletionResult]::new('--session-idle-secs', '--session-idle-secs', [CompletionResultType]::ParameterName, 'Seconds a session may sit unused before it ends [default: 3600]')
            [CompletionResult]::new('--max-sessions', '--max-sessions', [CompletionResultType]::ParameterName, 'Sessions at once before new ones are refused with 429 [default: 100]. Also read from VICTOR_SERVER_MAX_SESSIONS (seed 000''s name)')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS with this PEM certificate chain instead (needs --tls-key)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The PEM private key of --tls-cert')
            [CompletionResult]::new('--render-max-payload-bytes', '--render-max-payload-bytes', [CompletionResultType]::ParameterName, 'Largest diagram source a render accepts; more is refused with 413 [default: 20000]')
            [CompletionResult]::new('--render-timeout-secs', '--render-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds a render may take; then its tool''s whole process group is killed and the answer is 504 [default: 10]')
            [CompletionResult]::new('--render-max-concurrency', '--render-max-concurrency', [CompletionResultType]::ParameterName, 'Renders running at once, and warm PlantUML processes kept [default: 2]')
            [CompletionResult]::new('--render-max-queue', '--render-max-queue', [CompletionResultType]::ParameterName, 'Renders waiting for a free slot before more are refused with 503 [default: 32]')
            [CompletionResult]::new('--render-max-output-bytes', '--render-max-output-bytes', [CompletionResultType]::ParameterName, 'Largest SVG a render may produce [default: 10485760]')
            [CompletionResult]::new('--render-prewarm', '--render-prewarm', [CompletionResultType]::ParameterName, 'Start the warm PlantUML processes with the server (false: at the first PlantUML render) [default: true]')
            [CompletionResult]::new('--render-cache-max-bytes', '--render-cache-max-bytes', [CompletionResultType]::ParameterName, 'SVG bytes of rendered diagrams kept in DATA_DIR/render-cache; past it the least recently used are deleted, and 0 keeps none on disk [default: 268435456]')
            [CompletionResult]::new('--provider', '--provider', [CompletionResultType]::ParameterName, 'An LLM provider as NAME=KIND:URL[#MODEL], KIND one of ollama, openai, anthropic (repeatable; added to config.toml''s [providers.NAME] tables): --provider gpt=openai:https://api.openai.com/v1#gpt-4o-mini. Keys come from OPENAI_API_KEY and ANTHROPIC_API_KEY. Without any provider: Ollama on this machine')
            [CompletionResult]::new('--default-provider', '--default-provider', [CompletionResultType]::ParameterName, 'The provider chats use when they name none [default: the first by name]')
            [CompletionResult]::new('--llm-first-byte-timeout-secs', '--llm-first-byte-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds to wait for a provider''s first byte; local models load slowly [default: 300]')
            [CompletionResult]::new('--llm-idle-timeout-secs', '--llm-idle-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds a streaming reply may go silent before it fails [default: 120]')
            [CompletionResult]::new('--llm-retries', '--llm-retries', [CompletionResultType]::ParameterName, 'Times a connection to a provider is retried before it counts as unreachable [default: 3]')
            [CompletionResult]::new('--workspace-root', '--workspace-root', [CompletionResultType]::ParameterName, 'A directory agents may work in, with everything below it (repeatable) [default: the home directory]')
            [CompletionResult]::new('--approval-timeout-secs', '--approval-timeout-secs', [CompletionResultType]::ParameterName, 'Seconds an agent''s tool call waits for a person''s approval [default: 600]')
            [CompletionResult]::new('--on-unanswered', '--on-unanswered', [CompletionResultType]::ParameterName, 'What an approval nobody answers in time comes to: deny (the agent is told and goes on), wait (for ever) or fail (the task) [default: deny]')
            [CompletionResult]::new('--default-kernel', '--default-kernel', [CompletionResultType]::ParameterName, 'The Jupyter kernel an interpreter session runs when it names none [default: python3]')
            [CompletionResult]::new('--kernel-idle-secs', '--kernel-idle-secs', [CompletionResultType]::ParameterName, 'Seconds an interpreter session may go unused before it is closed; 0 keeps sessions until they are closed [default: 3600]')
            [CompletionResult]::new('--max-kernels', '--max-kernels', [CompletionResultType]::ParameterName, 'Interpreter sessions open at once; more are refused with 503 [default: 32]')
            [CompletionResult]::new('--max-kernels-per-client', '--max-kernels-per-client', [CompletionResultType]::ParameterName, 'Interpreter sessions open at once for one client; more are refused with 429 [default: 8]')
            [CompletionResult]::new('--session-warm-pool', '--session-warm-pool', [CompletionResultType]::ParameterName, 'Kernels of the default kernel kept started ahead (a warm pool), so that a new session in the server''s directory is ready at once; refilled in the background [default: 0]')
            [CompletionResult]::new('--task-workspaces', '--task-workspaces', [CompletionResultType]::ParameterName, 'Where a task started through seed 001''s `POST /tasks` gets a new directory of its own [default: workspaces in the data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, 'Serve HTTPS and WSS with a self-signed certificate, made on first use and kept in DATA_DIR/tls; clients pin its fingerprint, which the server prints')
            [CompletionResult]::new('--render-unsafe', '--render-unsafe', [CompletionResultType]::ParameterName, 'Let diagrams include files and reach URLs (PlantUML !include, Graphviz image=, d2 icons). Only for a server whose every user may read its files')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start a task and print its id')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List tasks, newest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one task')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Print a task''s output (with --json, its events as NDJSON)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for a task to end and exit with its exit code')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a task: SIGTERM, then SIGKILL after the server''s grace period')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause a running task (SIGSTOP to its process group)')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused task (SIGCONT)')
            [CompletionResult]::new('input', 'input', [CompletionResultType]::ParameterValue, 'Write to a task''s stdin: TEXT and a newline, or `-` for this command''s own stdin')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a finished task and its events')
            [CompletionResult]::new('guide', 'guide', [CompletionResultType]::ParameterValue, 'Tell a running agent something; it reads it before its next model call')
            [CompletionResult]::new('approvals', 'approvals', [CompletionResultType]::ParameterValue, 'List the agents'' tool calls waiting for approval (with --all, answered ones too)')
            [CompletionResult]::new('approve', 'approve', [CompletionResultType]::ParameterValue, 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task')
            [CompletionResult]::new('checkpoints', 'checkpoints', [CompletionResultType]::ParameterValue, 'List an agent''s checkpoints: the files each change touched, saved before it')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Put an agent''s workspace back as it was before a checkpoint''s change (pause it first while it runs)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;task;start' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name to recognise the task by')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Working directory on the server [default: this directory when the server runs on this machine, else the server''s --default-cwd]')
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'Environment variable for the task (repeatable)')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Environment variable for the task (repeatable)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Stop the task after this long running: 90, 90s, 5m, 1h')
            [CompletionResult]::new('--priority', '--priority', [CompletionResultType]::ParameterName, 'Higher runs first when tasks queue')
            [CompletionResult]::new('--require', '--require', [CompletionResultType]::ParameterName, 'Run only on a node that has this label (`victor serve --label`; repeatable): --require gpu')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'Feed this file to the task''s stdin (`-`: this command''s stdin), then close it')
            [CompletionResult]::new('--idempotency-key', '--idempotency-key', [CompletionResultType]::ParameterName, 'Retry-safe start: the same key returns the task the first call started')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Start an agent with this prompt instead of a command: a model that works in --workspace with tools (read, search, edit, run commands), asking before it changes files or runs commands')
            [CompletionResult]::new('--workspace', '--workspace', [CompletionResultType]::ParameterName, 'The agent''s workspace on the server [default: this directory]')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'build (changes files, runs commands), plan or explore (only read) [default: build]')
            [CompletionResult]::new('--provider', '--provider', [CompletionResultType]::ParameterName, 'The agent''s provider, by the server''s name for it')
            [CompletionResult]::new('--model', '--model', [CompletionResultType]::ParameterName, 'The agent''s model [default: the provider''s]')
            [CompletionResult]::new('--max-steps', '--max-steps', [CompletionResultType]::ParameterName, 'Model calls the agent may make [default: 50]')
            [CompletionResult]::new('--approve', '--approve', [CompletionResultType]::ParameterName, 'What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--shell', '--shell', [CompletionResultType]::ParameterName, 'Run the command with /bin/sh -c (automatic for a single argument with spaces)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;run' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name to recognise the task by')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Working directory on the server [default: this directory when the server runs on this machine, else the server''s --default-cwd]')
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'Environment variable for the task (repeatable)')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Environment variable for the task (repeatable)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Stop the task after this long running: 90, 90s, 5m, 1h')
            [CompletionResult]::new('--priority', '--priority', [CompletionResultType]::ParameterName, 'Higher runs first when tasks queue')
            [CompletionResult]::new('--require', '--require', [CompletionResultType]::ParameterName, 'Run only on a node that has this label (`victor serve --label`; repeatable): --require gpu')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'Feed this file to the task''s stdin (`-`: this command''s stdin), then close it')
            [CompletionResult]::new('--idempotency-key', '--idempotency-key', [CompletionResultType]::ParameterName, 'Retry-safe start: the same key returns the task the first call started')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Start an agent with this prompt instead of a command: a model that works in --workspace with tools (read, search, edit, run commands), asking before it changes files or runs commands')
            [CompletionResult]::new('--workspace', '--workspace', [CompletionResultType]::ParameterName, 'The agent''s workspace on the server [default: this directory]')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'build (changes files, runs commands), plan or explore (only read) [default: build]')
            [CompletionResult]::new('--provider', '--provider', [CompletionResultType]::ParameterName, 'The agent''s provider, by the server''s name for it')
            [CompletionResult]::new('--model', '--model', [CompletionResultType]::ParameterName, 'The agent''s model [default: the provider''s]')
            [CompletionResult]::new('--max-steps', '--max-steps', [CompletionResultType]::ParameterName, 'Model calls the agent may make [default: 50]')
            [CompletionResult]::new('--approve', '--approve', [CompletionResultType]::ParameterName, 'What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--shell', '--shell', [CompletionResultType]::ParameterName, 'Run the command with /bin/sh -c (automatic for a single argument with spaces)')
            [CompletionResult]::new('--detach', '--detach', [CompletionResultType]::ParameterName, 'Ctrl-C leaves the task running instead of cancelling it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;list' {
            [CompletionResult]::new('--state', '--state', [CompletionResultType]::ParameterName, 'Only tasks in these states (comma-separated: running,queued)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many tasks')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;show' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;logs' {
            [CompletionResult]::new('--after', '--after', [CompletionResultType]::ParameterName, 'Only events after this seq (Ctrl-C on -f prints the one to go on from)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Keep following until the task ends')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep following until the task ends')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;wait' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (exit 75): 90, 90s, 5m, 1h')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;cancel' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;pause' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;resume' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;input' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Do not add a newline after TEXT')
            [CompletionResult]::new('--no-newline', '--no-newline', [CompletionResultType]::ParameterName, 'Do not add a newline after TEXT')
            [CompletionResult]::new('--eof', '--eof', [CompletionResultType]::ParameterName, 'Close the task''s stdin afterwards (it sees end of file)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;rm' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;guide' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;approvals' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Answered and expired ones too')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;approve' {
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why, for the agent (with --deny)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--always', '--always', [CompletionResultType]::ParameterName, 'always')
            [CompletionResult]::new('--deny', '--deny', [CompletionResultType]::ParameterName, 'deny')
            [CompletionResult]::new('--cancel', '--cancel', [CompletionResultType]::ParameterName, 'cancel')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;checkpoints' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;rollback' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;task;help' {
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start a task and print its id')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List tasks, newest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one task')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Print a task''s output (with --json, its events as NDJSON)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for a task to end and exit with its exit code')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a task: SIGTERM, then SIGKILL after the server''s grace period')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause a running task (SIGSTOP to its process group)')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused task (SIGCONT)')
            [CompletionResult]::new('input', 'input', [CompletionResultType]::ParameterValue, 'Write to a task''s stdin: TEXT and a newline, or `-` for this command''s own stdin')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a finished task and its events')
            [CompletionResult]::new('guide', 'guide', [CompletionResultType]::ParameterValue, 'Tell a running agent something; it reads it before its next model call')
            [CompletionResult]::new('approvals', 'approvals', [CompletionResultType]::ParameterValue, 'List the agents'' tool calls waiting for approval (with --all, answered ones too)')
            [CompletionResult]::new('approve', 'approve', [CompletionResultType]::ParameterValue, 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task')
            [CompletionResult]::new('checkpoints', 'checkpoints', [CompletionResultType]::ParameterValue, 'List an agent''s checkpoints: the files each change touched, saved before it')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Put an agent''s workspace back as it was before a checkpoint''s change (pause it first while it runs)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;task;help;start' {
            break
        }
        'victor;task;help;run' {
            break
        }
        'victor;task;help;list' {
            break
        }
        'victor;task;help;show' {
            break
        }
        'victor;task;help;logs' {
            break
        }
        'victor;task;help;wait' {
            break
        }
        'victor;task;help;cancel' {
            break
        }
        'victor;task;help;pause' {
            break
        }
        'victor;task;help;resume' {
            break
        }
        'victor;task;help;input' {
            break
        }
        'victor;task;help;rm' {
            break
        }
        'victor;task;help;guide' {
            break
        }
        'victor;task;help;approvals' {
            break
        }
        'victor;task;help;approve' {
            break
        }
        'victor;task;help;checkpoints' {
            break
        }
        'victor;task;help;rollback' {
            break
        }
        'victor;task;help;help' {
            break
        }
        'victor;watch' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--scrollback', '--scrollback', [CompletionResultType]::ParameterName, 'Lines of the open log kept in memory; older ones are read from the server again when you scroll to them')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;chat' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--model', '--model', [CompletionResultType]::ParameterName, 'The model to use (the conversation''s, or the provider''s default, when not given)')
            [CompletionResult]::new('--provider', '--provider', [CompletionResultType]::ParameterName, 'The provider to use, by the name the server gives it (`victor chat` then `/provider` lists them)')
            [CompletionResult]::new('--system', '--system', [CompletionResultType]::ParameterName, 'A system prompt for a new conversation')
            [CompletionResult]::new('--session', '--session', [CompletionResultType]::ParameterName, 'Continue the conversation with this id')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the reply as one JSON object once it is complete, instead of streaming it')
            [CompletionResult]::new('--continue', '--continue', [CompletionResultType]::ParameterName, 'Continue the most recently used conversation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;repl' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--kernel', '--kernel', [CompletionResultType]::ParameterName, 'The Jupyter kernel of a new session (`victor repl --kernels` lists them) [default: the server''s, python3]')
            [CompletionResult]::new('--session', '--session', [CompletionResultType]::ParameterName, 'Use this open session (its variables are there) instead of starting one')
            [CompletionResult]::new('--exec', '--exec', [CompletionResultType]::ParameterName, 'Run this code and exit (`-`: read it from stdin): 0 when it ran, 1 when it raised')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Keep the session this command started open when it exits, and print its id')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the execution''s events as NDJSON instead of its output')
            [CompletionResult]::new('--kernels', '--kernels', [CompletionResultType]::ParameterName, 'List the kernels installed on the server')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;keys' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Make a key and print it (the only time it is shown; the server keeps only its hash)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the keys: ids, names, scopes, last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key by id (or by a name only one key has); its session tokens stop working too')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;keys;create' {
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'read: list, show and watch tasks; control: also start and steer them; admin: also manage keys')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Whose key it is or what it is for')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;keys;list' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;keys;revoke' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of text for people')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;keys;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Make a key and print it (the only time it is shown; the server keeps only its hash)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the keys: ids, names, scopes, last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key by id (or by a name only one key has); its session tokens stop working too')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;keys;help;create' {
            break
        }
        'victor;keys;help;list' {
            break
        }
        'victor;keys;help;revoke' {
            break
        }
        'victor;keys;help;help' {
            break
        }
        'victor;remote' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the remotes (keys are never shown, only whether one is set)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Forget a remote')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;remote;add' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The server''s API key (stored in remotes.toml, readable by you only)')
            [CompletionResult]::new('--fingerprint', '--fingerprint', [CompletionResultType]::ParameterName, 'The fingerprint `victor serve --tls` printed: trust exactly that certificate')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Trust the certificate the server presents without asking')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Trust the certificate the server presents without asking')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;remote;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;remote;remove' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;remote;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the remotes (keys are never shown, only whether one is set)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Forget a remote')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;remote;help;add' {
            break
        }
        'victor;remote;help;list' {
            break
        }
        'victor;remote;help;remove' {
            break
        }
        'victor;remote;help;help' {
            break
        }
        'victor;render' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where the SVG goes: a file (`-` for stdout) for one diagram, a directory for several [default: beside each file, with the extension .svg]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Where the SVG goes: a file (`-` for stdout) for one diagram, a directory for several [default: beside each file, with the extension .svg]')
            [CompletionResult]::new('-t', '-t', [CompletionResultType]::ParameterName, 'The diagram type when the extension does not say: graphviz (dot), plantuml, mermaid, d2, drawio')
            [CompletionResult]::new('--type', '--type', [CompletionResultType]::ParameterName, 'The diagram type when the extension does not say: graphviz (dot), plantuml, mermaid, d2, drawio')
            [CompletionResult]::new('-K', '-K ', [CompletionResultType]::ParameterName, 'Graphviz layout engine, for the Graphviz files among FILE (the others ignore it, with a warning; with no Graphviz file at all it is an error)')
            [CompletionResult]::new('--engine', '--engine', [CompletionResultType]::ParameterName, 'Graphviz layout engine, for the Graphviz files among FILE (the others ignore it, with a warning; with no Graphviz file at all it is an error)')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Which renderer: the installed tool, victor''s built-in one, or auto (the tool when it is installed)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Render through a victor server: its URL or the name of a remote; alone, the one in VICTOR_SERVER or config.toml [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('--local', '--local', [CompletionResultType]::ParameterName, 'Render in this process [the default unless VICTOR_SERVER is set]')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Re-render each file when it changes, until Ctrl-C')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Re-render each file when it changes, until Ctrl-C')
            [CompletionResult]::new('--unsafe', '--unsafe', [CompletionResultType]::ParameterName, 'With --local: let diagrams include files and reach URLs (safe mode off)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;mcp' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Server URL, or the name of a server kept with `victor remote add` [default: http://127.0.0.1:8765]')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key, when the server requires one (overrides a remote''s). For a server given by URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own key or this flag, never the key this machine''s server may be using')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Data dir of a server on this machine: its Unix socket there needs no key [default: the platform''s data dir]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;completions' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write the completions of every shell into this directory')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;man' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write a page per command into this directory')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Settings file (default: config.toml in the platform''s config dir, e.g. ~/.config/victor)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'victor;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the task server on this machine')
            [CompletionResult]::new('task', 'task', [CompletionResultType]::ParameterValue, 'Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes)')
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped)')
            [CompletionResult]::new('chat', 'chat', [CompletionResultType]::ParameterValue, 'Chat with the server''s models: interactively on a terminal, or one question for scripts')
            [CompletionResult]::new('repl', 'repl', [CompletionResultType]::ParameterValue, 'Run code in an interpreter session (a Jupyter kernel on the server that keeps its state)')
            [CompletionResult]::new('keys', 'keys', [CompletionResultType]::ParameterValue, 'Create, list and revoke scoped API keys (read, control, admin)')
            [CompletionResult]::new('remote', 'remote', [CompletionResultType]::ParameterValue, 'Keep servers on other machines under a name, pinned to their TLS certificate')
            [CompletionResult]::new('render', 'render', [CompletionResultType]::ParameterValue, 'Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server')
            [CompletionResult]::new('mcp', 'mcp', [CompletionResultType]::ParameterValue, 'Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a remote''s name)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions (or write every shell''s with --dir)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (or write all of them with --dir)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'victor;help;serve' {
            break
        }
        'victor;help;task' {
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start a task and print its id')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List tasks, newest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one task')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Print a task''s output (with --json, its events as NDJSON)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for a task to end and exit with its exit code')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a task: SIGTERM, then SIGKILL after the server''s grace period')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause a running task (SIGSTOP to its process group)')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused task (SIGCONT)')
            [CompletionResult]::new('input', 'input', [CompletionResultType]::ParameterValue, 'Write to a task''s stdin: TEXT and a newline, or `-` for this command''s own stdin')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a finished task and its events')
            [CompletionResult]::new('guide', 'guide', [CompletionResultType]::ParameterValue, 'Tell a running agent something; it reads it before its next model call')
            [CompletionResult]::new('approvals', 'approvals', [CompletionResultType]::ParameterValue, 'List the agents'' tool calls waiting for approval (with --all, answered ones too)')
            [CompletionResult]::new('approve', 'approve', [CompletionResultType]::ParameterValue, 'Answer an approval: allow this call (default), --always (this tool for the rest of the task), --deny (with --reason for the agent), or --cancel the task')
            [CompletionResult]::new('checkpoints', 'checkpoints', [CompletionResultType]::ParameterValue, 'List an agent''s checkpoints: the files each change touched, saved before it')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Put an agent''s workspace back as it was before a checkpoint''s change (pause it first while it runs)')
            break
        }
        'victor;help;task;start' {
            break
        }
        'victor;help;task;run' {
            break
        }
        'victor;help;task;list' {
            break
        }
        'victor;help;task;show' {
            break
        }
        'victor;help;task;logs' {
            break
        }
        'victor;help;task;wait' {
            break
        }
        'victor;help;task;cancel' {
            break
        }
        'victor;help;task;pause' {
            break
        }
        'victor;help;task;resume' {
            break
        }
        'victor;help;task;input' {
            break
        }
        'victor;help;task;rm' {
            break
        }
        'victor;help;task;guide' {
            break
        }
        'victor;help;task;approvals' {
            break
        }
        'victor;help;task;approve' {
            break
        }
        'victor;help;task;checkpoints' {
            break
        }
        'victor;help;task;rollback' {
            break
        }
        'victor;help;watch' {
            break
        }
        'victor;help;chat' {
            break
        }
        'victor;help;repl' {
            break
        }
        'victor;help;keys' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Make a key and print it (the only time it is shown; the server keeps only its hash)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the keys: ids, names, scopes, last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key by id (or by a name only one key has); its session tokens stop working too')
            break
        }
        'victor;help;keys;create' {
            break
        }
        'victor;help;keys;list' {
            break
        }
        'victor;help;keys;revoke' {
            break
        }
        'victor;help;remote' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Keep a server under a name (then `--server NAME` reaches it) after checking it answers')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the remotes (keys are never shown, only whether one is set)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Forget a remote')
            break
        }
        'victor;help;remote;add' {
            break
        }
        'victor;help;remote;list' {
            break
        }
        'victor;help;remote;remove' {
            break
        }
        'victor;help;render' {
            break
        }
        'victor;help;mcp' {
            break
        }
        'victor;help;completions' {
            break
        }
        'victor;help;man' {
            break
        }
        'victor;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
