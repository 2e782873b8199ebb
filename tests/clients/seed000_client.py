# The Python client printed in seed 000 (examples/api_client.py), copied unchanged from the
# seed document; only the driver at the end is victor's. tests/chat_compat.rs runs it against a
# real victor to show that seed 000's clients work unchanged.

import requests
import websocket
import json

class VictorClient:
    def __init__(self, base_url="http://localhost:8765", api_key=None):
        self.base_url = base_url
        self.api_key = api_key
        self.headers = {}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def chat(self, message):
        response = requests.post(
            f"{self.base_url}/chat",
            json={"messages": [{"role": "user", "content": message}]},
            headers=self.headers
        )
        return response.json()

    def stream_chat(self, message):
        response = requests.post(
            f"{self.base_url}/chat/stream",
            json={"messages": [{"role": "user", "content": message}]},
            headers=self.headers,
            stream=True
        )
        for line in response.iter_lines():
            if line:
                line = line.decode('utf-8')
                if line.startswith('data: '):
                    data = json.loads(line[6:])
                    if data == "[DONE]":
                        break
                    yield data


if __name__ == "__main__":
    import sys

    client = VictorClient(base_url=sys.argv[1], api_key=sys.argv[2] if len(sys.argv) > 2 else None)
    result = client.chat("Hello, Victor!")
    print(result["content"])

    for chunk in client.stream_chat("Hello, Victor!"):
        print(chunk.get("content", ""), end="")
    print()
