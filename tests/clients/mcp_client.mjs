// Drives victor with the official MCP TypeScript SDK (@modelcontextprotocol/sdk from npm), for
// tests/mcp.rs: over Streamable HTTP (`http URL KEY`) or through `victor mcp` on stdio
// (`stdio VICTOR URL KEY`). Lists tools, starts a task and reads its log, follows a long one
// with progress and cancels the call; prints what it saw as one JSON object.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, ...args] = process.argv.slice(2);
let transport;
if (mode === "http") {
    const [url, key] = args;
    transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
        requestInit: { headers: key ? { Authorization: `Bearer ${key}` } : {} },
    });
} else {
    const [victor, url, key] = args;
    transport = new StdioClientTransport({
        command: victor,
        args: ["mcp"],
        env: { ...process.env, VICTOR_SERVER: url, VICTOR_API_KEY: key },
        stderr: "inherit",
    });
}
const client = new Client({ name: "victor-test", version: "1.0.0" });
await client.connect(transport);

const textOf = (result) => result.content.filter((c) => c.type === "text").map((c) => c.text).join("");
const seen = {};
seen.tools = (await client.listTools()).tools.map((tool) => tool.name).sort();

const done = await client.callTool({
    name: "start_task",
    arguments: { command: "printf 'one\\ntwo\\n'", wait: true },
});
seen.done = textOf(done);
const task = done.structuredContent.task.id;
const log = await client.callTool({ name: "read_log", arguments: { task_id: task } });
seen.log = log.structuredContent.text;

// A long call: progress comes, then the call is cancelled, which cancels the task it started.
const controller = new AbortController();
const progress = [];
try {
    await client.callTool(
        {
            name: "start_task",
            arguments: { command: "for i in $(seq 1 600); do echo tick $i; sleep 0.05; done", wait: true, name: "ticker" },
        },
        undefined,
        {
            signal: controller.signal,
            onprogress: (p) => {
                progress.push(p.message);
                if (progress.length === 5) controller.abort("enough");
            },
        },
    );
    seen.cancelled = "the call was not cancelled";
} catch (error) {
    seen.cancelled = String(error);
}
seen.progress = progress;

// The ticker's task ends cancelled.
const listed = await client.callTool({ name: "list_tasks", arguments: {} });
const ticker = listed.structuredContent.tasks.find((t) => t.name === "ticker");
let state = ticker.state;
for (let i = 0; i < 100 && state !== "cancelled"; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const shown = await client.callTool({ name: "show_task", arguments: { task_id: ticker.id } });
    state = shown.structuredContent.task.state;
}
seen.ticker = state;

await client.close();
console.log(JSON.stringify(seen));
