-- Master data of the Leading2Lean areas, versioned like 0001's tables
-- (ReplacingMergeTree(version) keyed by id, deleted = 1 for a delete).

-- Kinds of dispatches; downtime = 1: a dispatch of the type means its
-- machine is down.
CREATE TABLE IF NOT EXISTS dispatchtypes (
    id            UInt64,
    site          UInt64,
    code          String,
    description   String,
    downtime      UInt8,
    active        UInt8 DEFAULT 1,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Groups of scrap reasons (reasons.scrapcategory).
CREATE TABLE IF NOT EXISTS scrapcategories (
    id            UInt64,
    site          UInt64,
    code          String,
    description   String,
    active        UInt8 DEFAULT 1,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Components of products: product takes quantity of the component code.
CREATE TABLE IF NOT EXISTS productcomponents (
    id            UInt64,
    site          UInt64,
    product       UInt64,
    code          String,
    description   String,
    quantity      Float64,
    active        UInt8 DEFAULT 1,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;
