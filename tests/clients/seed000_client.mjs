// The JavaScript client printed in seed 000 (examples/api_client.js), copied unchanged from the
// seed document; only the driver at the end is victor's. tests/chat_compat.rs runs it with
// Node.js against a real victor to show that seed 000's clients work unchanged.

class VictorClient {
    constructor(baseUrl = 'http://localhost:8765', apiKey = null) {
        this.baseUrl = baseUrl;
        this.apiKey = apiKey;
    }

    async chat(message) {
        const response = await fetch(`${this.baseUrl}/chat`, {
            method: 'POST',
            headers: {
                'Content-Type': 'application/json',
                ...(this.apiKey && { 'Authorization': `Bearer ${this.apiKey}` })
            },
            body: JSON.stringify({
                messages: [{ role: 'user', content: message }]
            })
        });
        return await response.json();
    }

    async *streamChat(message) {
        const response = await fetch(`${this.baseUrl}/chat/stream`, {
            method: 'POST',
            headers: {
                'Content-Type': 'application/json',
                ...(this.apiKey && { 'Authorization': `Bearer ${this.apiKey}` })
            },
            body: JSON.stringify({
                messages: [{ role: 'user', content: message }]
            })
        });

        const reader = response.body.getReader();
        const decoder = new TextDecoder();

        while (true) {
            const { done, value } = await reader.read();
            if (done) break;

            const chunk = decoder.decode(value);
            const lines = chunk.split('\n');

            for (const line of lines) {
                if (line.startsWith('data: ')) {
                    const data = JSON.parse(line.slice(6));
                    if (data === '[DONE]') return;
                    yield data;
                }
            }
        }
    }
}

// The seed's usage example passes the key where the URL belongs; the driver passes both.
const [baseUrl, apiKey] = process.argv.slice(2);
const client = new VictorClient(baseUrl, apiKey || null);
const result = await client.chat('Hello, Victor!');
console.log(result.content);

for await (const chunk of client.streamChat('Hello, Victor!')) {
    process.stdout.write(chunk.content || '');
}
process.stdout.write('\n');
