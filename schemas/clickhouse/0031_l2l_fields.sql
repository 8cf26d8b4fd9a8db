-- Fields Leading2Lean's clients read: a site may be a test site, a line
-- may record production (existing lines do), a scrap reason may belong to
-- a scrap category (scrapcategories.id; 0: none). One ALTER per statement.
ALTER TABLE sites ADD COLUMN test_site UInt8 DEFAULT 0;
ALTER TABLE lines ADD COLUMN enable_production UInt8 DEFAULT 1;
ALTER TABLE reasons ADD COLUMN scrapcategory UInt64 DEFAULT 0;
