"""walvus quickstart: an unchanged pymilvus program.

make up            # in another terminal
python examples/quickstart.py [http://127.0.0.1:19530]
"""

import random
import sys

from pymilvus import MilvusClient

uri = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:19530"
client = MilvusClient(uri)

if client.has_collection("quickstart"):
    client.drop_collection("quickstart")
client.create_collection("quickstart", dimension=8)  # AUTOINDEX, COSINE, dynamic field, loaded

rng = random.Random(0)
rows = [
    {
        "id": i,
        "vector": [rng.random() for _ in range(8)],
        "color": rng.choice(["red", "green", "blue"]),
        "n": i,
    }
    for i in range(1000)
]
print("insert:", client.insert("quickstart", rows)["insert_count"], "rows")

hits = client.search(
    "quickstart",
    data=[rows[0]["vector"]],
    limit=3,
    filter='color == "red" or id == 0',
    output_fields=["color", "n"],
    consistency_level="Strong",
)
print("search:", [(h["id"], round(h["distance"], 4), h["entity"]["color"]) for h in hits[0]])
assert hits[0][0]["id"] == 0

print(
    "query:", client.query("quickstart", filter="n < 3", output_fields=["color"], consistency_level="Strong")
)

client.upsert("quickstart", [{"id": 1, "vector": rows[1]["vector"], "color": "purple", "n": 1}])
print("after upsert:", client.get("quickstart", ids=[1], output_fields=["color"]))

client.delete("quickstart", ids=[2, 3])
client.delete("quickstart", filter="n >= 990")
count = client.query("quickstart", filter="", output_fields=["count(*)"], consistency_level="Strong")
print("count:", count[0]["count(*)"])
assert count[0]["count(*)"] == 1000 - 2 - 10
client.close()
