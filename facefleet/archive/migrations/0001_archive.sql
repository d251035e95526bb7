-- The track archive: jobs, tracks with their embeddings, unknown-people clusters,
-- labelled faces for training. Embeddings are tagged with their extractor; the vector
-- columns have no fixed dimension (extractors differ), so each extractor gets its own
-- partial HNSW index on a cast to its dimension (created by the archive on first use).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE jobs (
    job_id      text PRIMARY KEY,
    source      text NOT NULL,
    frame_count integer NOT NULL,
    fps         real NOT NULL,
    extractor   text NOT NULL,
    finished    timestamptz NOT NULL,
    indexed     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clusters (
    cluster_id  bigserial PRIMARY KEY,
    extractor   text NOT NULL,
    -- Bumped by every change of membership: naming a cluster that changed since it was
    -- listed is refused.
    version     integer NOT NULL DEFAULT 1,
    -- Set by split or merge: the nightly re-clustering leaves a pinned cluster as it is.
    pinned      boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tracks (
    id               bigserial PRIMARY KEY,
    job_id           text NOT NULL REFERENCES jobs ON DELETE CASCADE,
    track_id         integer NOT NULL,
    source           text NOT NULL,
    first_frame      integer NOT NULL,
    last_frame       integer NOT NULL,
    start_s          real NOT NULL,
    end_s            real NOT NULL,
    num_faces        integer NOT NULL,
    -- The name given at processing time, and the name as corrected (null: not corrected).
    identity         text,
    similarity       real,
    corrected        text,
    is_corrected     boolean NOT NULL DEFAULT false,
    -- Names a person said this track is not.
    not_names        text[] NOT NULL DEFAULT '{}',
    cluster_id       bigint REFERENCES clusters ON DELETE SET NULL,
    extractor        text NOT NULL,
    embedding        vector NOT NULL,
    thumbnail        text NOT NULL,
    UNIQUE (job_id, track_id)
);
CREATE INDEX tracks_cluster ON tracks (cluster_id);
CREATE INDEX tracks_name ON tracks ((CASE WHEN is_corrected THEN corrected ELSE identity END));

-- A track's best faces: embedding, quality, and the stored region (object key) with its
-- landmarks, from which any extractor re-embeds it and a gallery enrolls it.
CREATE TABLE track_faces (
    track       bigint NOT NULL REFERENCES tracks ON DELETE CASCADE,
    k           integer NOT NULL,
    frame       integer NOT NULL,
    quality     real NOT NULL,
    landmarks   real[] NOT NULL,
    region      text NOT NULL,
    embedding   vector NOT NULL,
    PRIMARY KEY (track, k)
);

-- Faces a person labelled (a track corrected with --is, a cluster named): training data
-- of the scheduled retraining. Removed with the person (forget) or the job.
CREATE TABLE labelled_faces (
    id          bigserial PRIMARY KEY,
    person      text NOT NULL,
    gallery     text NOT NULL,
    region      text NOT NULL,
    landmarks   real[] NOT NULL,
    job_id      text REFERENCES jobs ON DELETE CASCADE,
    track_id    integer,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX labelled_person ON labelled_faces (person);
