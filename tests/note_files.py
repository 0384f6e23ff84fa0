"""Small input files as exports have them, and the rows the reader makes of a plan: for the plan and read tests."""

import pyarrow as pa
import pyarrow.parquet as pq

from embednv.embed.read import read_shards


def write_parquet(path, ids, texts, id_type=pa.int64()):
    pq.write_table(pa.table({"note_id": pa.array(ids, id_type), "text": pa.array(texts, pa.string())}), path)
    return str(path)


def rows_of(plan, id_column="note_id", text_column="text"):
    out = []
    for file_index, file in enumerate(plan.files):
        shards = [s for s in plan.shards if s.file == file_index]
        duplicates = plan.duplicates.get(file_index, frozenset())
        id_type = "int" if plan.id_type == pa.int64() and file.format != "parquet" else "string"
        for table in read_shards(file, shards, id_column, text_column, duplicates, id_type):
            out.extend(table.to_pylist())
    return out


# Seven notes on distinct topics: a query's nearest notes are clear whatever the model.
TOPIC_NOTES = [
    "Chest pain radiating to the left arm with diaphoresis.",
    "Acute myocardial infarction treated with a coronary stent.",
    "Displaced fracture of the left femur after a fall.",
    "Knee effusion and torn meniscus on MRI.",
    "Generalized tonic-clonic seizure, started on levetiracetam.",
    "Colonoscopy showed two small polyps, removed.",
    "Migraine with aura, photophobia and nausea.",
]
