-- Keyset walks of a project's groups by id (cache invalidation pages).
CREATE INDEX groups_project_id ON groups (project_id, id);
