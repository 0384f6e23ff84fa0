"""A synthetic clinical-note corpus of embednv's own making: for demos, tests and benchmarks.

No real patient is in it. Each note is assembled from sentence templates of its specialty
(each specialty has its own vocabulary, so a good embedding separates them) plus shared
boilerplate. Note lengths follow a log-normal distribution with a long tail, like real
exports: most notes are a few hundred tokens, some are several thousand, a few are tens.
Generation is vectorised per chunk of notes and seeded per chunk, so a given seed always
yields the same notes, and 1,000,000 notes take a few minutes.
"""

from __future__ import annotations

import numpy as np

SPECIALTIES: dict[str, dict[str, list[str]]] = {
    "cardiology": {
        "finding": ["exertional chest pain", "palpitations", "a systolic murmur", "bilateral ankle edema", "orthopnea"],
        "test": ["echocardiogram", "troponin", "stress test", "coronary angiography", "Holter monitor"],
        "plan": ["metoprolol", "atorvastatin", "aspirin", "cardiac catheterization", "apixaban"],
    },
    "pulmonology": {
        "finding": ["productive cough", "wheezing", "dyspnea on exertion", "hypoxemia", "pleuritic pain"],
        "test": ["spirometry", "chest CT", "arterial blood gas", "bronchoscopy", "sputum culture"],
        "plan": [
            "albuterol inhaler",
            "inhaled fluticasone",
            "supplemental oxygen",
            "pulmonary rehabilitation",
            "azithromycin",
        ],
    },
    "gastroenterology": {
        "finding": ["epigastric pain", "melena", "dysphagia", "bloating after meals", "elevated transaminases"],
        "test": ["colonoscopy", "upper endoscopy", "abdominal ultrasound", "lipase", "stool calprotectin"],
        "plan": ["omeprazole", "a low residue diet", "mesalamine", "hepatology referral", "polypectomy"],
    },
    "neurology": {
        "finding": [
            "unilateral weakness",
            "recurrent migraine",
            "a focal seizure",
            "paresthesias in both feet",
            "a resting tremor",
        ],
        "test": ["brain MRI", "electroencephalogram", "lumbar puncture", "nerve conduction study", "carotid doppler"],
        "plan": ["levetiracetam", "sumatriptan", "carbidopa levodopa", "physical therapy", "gabapentin"],
    },
    "orthopedics": {
        "finding": [
            "knee effusion",
            "a displaced radius fracture",
            "lower back pain radiating to the leg",
            "rotator cuff weakness",
            "hip stiffness",
        ],
        "test": ["knee radiograph", "lumbar MRI", "bone scan", "joint aspiration", "weight bearing films"],
        "plan": [
            "arthroscopic repair",
            "a cast for six weeks",
            "total hip arthroplasty",
            "a cortisone injection",
            "meloxicam",
        ],
    },
    "oncology": {
        "finding": [
            "a palpable breast mass",
            "unintentional weight loss",
            "night sweats",
            "a lung nodule",
            "painless lymphadenopathy",
        ],
        "test": ["PET CT", "core needle biopsy", "tumor markers", "bone marrow biopsy", "staging CT"],
        "plan": [
            "adjuvant chemotherapy",
            "radiation therapy",
            "tamoxifen",
            "a tumor board review",
            "immunotherapy with pembrolizumab",
        ],
    },
    "endocrinology": {
        "finding": [
            "polyuria and polydipsia",
            "heat intolerance",
            "a thyroid nodule",
            "poorly controlled glucose",
            "fatigue and weight gain",
        ],
        "test": ["hemoglobin A1c", "TSH and free T4", "thyroid ultrasound", "fasting lipid panel", "morning cortisol"],
        "plan": ["metformin", "insulin glargine", "levothyroxine", "methimazole", "a continuous glucose monitor"],
    },
    "nephrology": {
        "finding": ["rising creatinine", "proteinuria", "hyperkalemia", "flank pain", "fluid overload"],
        "test": [
            "renal ultrasound",
            "urinalysis",
            "urine protein to creatinine ratio",
            "renal biopsy",
            "basic metabolic panel",
        ],
        "plan": ["lisinopril", "hemodialysis", "a low potassium diet", "furosemide", "sodium bicarbonate"],
    },
    "psychiatry": {
        "finding": [
            "depressed mood",
            "auditory hallucinations",
            "panic attacks",
            "insomnia",
            "passive suicidal ideation",
        ],
        "test": ["PHQ-9", "GAD-7", "a mental status examination", "a safety assessment", "a collateral history"],
        "plan": [
            "sertraline",
            "cognitive behavioral therapy",
            "quetiapine",
            "a safety plan",
            "outpatient psychotherapy",
        ],
    },
    "dermatology": {
        "finding": [
            "an irregular pigmented lesion",
            "scaly plaques on the elbows",
            "a pruritic rash",
            "acne with scarring",
            "a nonhealing ulcer",
        ],
        "test": ["punch biopsy", "dermoscopy", "KOH preparation", "patch testing", "wound culture"],
        "plan": ["topical clobetasol", "wide local excision", "isotretinoin", "cryotherapy", "methotrexate"],
    },
    "obstetrics": {
        "finding": [
            "a gravid uterus at 32 weeks",
            "decreased fetal movement",
            "elevated blood pressure in pregnancy",
            "vaginal bleeding",
            "regular contractions",
        ],
        "test": [
            "obstetric ultrasound",
            "nonstress test",
            "glucose challenge test",
            "cervical length measurement",
            "group B strep culture",
        ],
        "plan": ["magnesium sulfate", "induction of labor", "cesarean delivery", "prenatal vitamins", "betamethasone"],
    },
    "pediatrics": {
        "finding": [
            "fever and ear pulling",
            "poor feeding",
            "a barking cough",
            "delayed speech milestones",
            "a diaper rash",
        ],
        "test": ["rapid strep test", "growth chart review", "developmental screening", "otoscopy", "newborn screen"],
        "plan": ["amoxicillin", "routine vaccinations", "speech therapy referral", "oral rehydration", "dexamethasone"],
    },
    "urology": {
        "finding": ["hematuria", "urinary retention", "an elevated PSA", "renal colic", "nocturia"],
        "test": ["cystoscopy", "CT urogram", "prostate biopsy", "post void residual", "urine culture"],
        "plan": [
            "tamsulosin",
            "ureteroscopy with laser lithotripsy",
            "finasteride",
            "a Foley catheter",
            "radical prostatectomy",
        ],
    },
    "ophthalmology": {
        "finding": [
            "blurred vision",
            "elevated intraocular pressure",
            "floaters and flashes",
            "a red painful eye",
            "macular drusen",
        ],
        "test": [
            "slit lamp examination",
            "optical coherence tomography",
            "visual field testing",
            "fundus photography",
            "tonometry",
        ],
        "plan": [
            "latanoprost drops",
            "cataract extraction",
            "intravitreal injection",
            "laser retinopexy",
            "artificial tears",
        ],
    },
}

_TEMPLATES = {
    "finding": [
        "The patient reports {x}.",
        "Examination is notable for {x}.",
        "She describes {x} over the past weeks.",
        "He presents with {x}.",
        "There is a history of {x}.",
    ],
    "test": [
        "A {x} was ordered.",
        "The {x} was reviewed today.",
        "Results of the {x} are pending.",
        "We obtained a {x}.",
    ],
    "plan": ["Plan: start {x}.", "We discussed {x} with the patient.", "Continue {x} and follow up.", "Recommend {x}."],
}
_BOILERPLATE = [
    "Vital signs are within normal limits.",
    "The patient is alert and oriented.",
    "No known drug allergies.",
    "Medications were reconciled.",
    "Follow up in clinic in four weeks.",
    "The risks and benefits were explained.",
    "Social history is noncontributory.",
    "Family history was reviewed.",
    "The patient agrees with the plan.",
]
_SECTIONS = ["HISTORY OF PRESENT ILLNESS:", "PHYSICAL EXAMINATION:", "ASSESSMENT AND PLAN:"]
# About 12 tokens per sentence; log-normal median ~20 sentences (~250 tokens), long tail to ~5,000 tokens.
_MEDIAN_SENTENCES, _SIGMA, _MAX_SENTENCES = 20, 0.9, 420
_CHUNK = 20_000


def _sentence_pools() -> tuple[list[str], list[np.ndarray]]:
    """All sentences, and per specialty the indices of its own; fixed, so seeds alone decide notes."""
    sentences = list(_BOILERPLATE)
    pools = []
    for vocab in SPECIALTIES.values():
        own = []
        for kind, templates in _TEMPLATES.items():
            for template in templates:
                for phrase in vocab[kind]:
                    own.append(len(sentences))
                    sentences.append(template.format(x=phrase))
        pools.append(np.array(own))
    return sentences, pools


def generate_notes(n: int, seed: int = 0):
    """Yield (note_ids, texts, specialties) chunks of at most 20,000 notes, deterministic for `seed`."""
    sentences, pools = _sentence_pools()
    names = list(SPECIALTIES)
    boiler = len(_BOILERPLATE)
    for chunk_index, start in enumerate(range(0, n, _CHUNK)):
        rng = np.random.default_rng([seed, chunk_index])  # per-chunk seed: the first k notes never depend on n
        size = min(_CHUNK, n - start)
        specialty = rng.integers(0, len(names), size)
        lengths = np.clip(rng.lognormal(np.log(_MEDIAN_SENTENCES), _SIGMA, size).astype(int), 1, _MAX_SENTENCES)
        texts = []
        for note in range(size):
            count = int(lengths[note])
            own = pools[specialty[note]][rng.integers(0, len(pools[specialty[note]]), count)]
            shared = rng.integers(0, boiler, count)
            picks = np.where(rng.random(count) < 0.7, own, shared)  # 70% specialty-specific sentences
            body = [sentences[i] for i in picks]
            third = max(1, count // 3)
            texts.append(
                f"{_SECTIONS[0]} {' '.join(body[:third])}\n\n{_SECTIONS[1]} {' '.join(body[third : 2 * third])}\n\n"
                f"{_SECTIONS[2]} {' '.join(body[2 * third :])}"
                if count > 2
                else " ".join(body)
            )
        yield np.arange(start + 1, start + size + 1, dtype=np.int64), texts, [names[s] for s in specialty]


def write_sample_corpus(path: str, n: int, seed: int = 0) -> int:
    """Write `n` notes to a Parquet file (columns note_id, text, specialty); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("note_id", pa.int64()), ("text", pa.large_string()), ("specialty", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for ids, texts, specialties in generate_notes(n, seed):
            writer.write_table(pa.table([ids, texts, specialties], schema=schema), row_group_size=_CHUNK)
    return n
