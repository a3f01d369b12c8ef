"""Companies: firmographics, the parent/subsidiary graph, and leads linked to companies.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE companies (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            name text NOT NULL,
            -- NULL when unknown; stored normalised (lower-case, no scheme, no www.).
            domain text,
            industry text NOT NULL DEFAULT '',
            employee_count integer,
            annual_revenue bigint,
            annual_revenue_currency text NOT NULL DEFAULT '',
            country text NOT NULL DEFAULT '',
            city text NOT NULL DEFAULT '',
            founded_year integer,
            website text NOT NULL DEFAULT '',
            linkedin_url text NOT NULL DEFAULT '',
            custom_fields jsonb NOT NULL DEFAULT '{}'::jsonb,
            parent_company_id text,
            -- The ids from the root of the group down to this company, each followed by '/'
            -- ("cmp_A/cmp_B/"). Kept in step with parent_company_id under the hierarchy
            -- lock; a group is then one index range (see leads.company_path).
            path text COLLATE "C" NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            archived_at timestamptz,
            CONSTRAINT companies_employee_count_non_negative CHECK (employee_count >= 0),
            CONSTRAINT companies_annual_revenue_non_negative CHECK (annual_revenue >= 0),
            CONSTRAINT companies_not_own_parent CHECK (parent_company_id <> id)
        )
        """
    )
    # The composite key lets foreign keys carry the workspace, so a parent or a lead's
    # company can never sit in another workspace, whatever the application does.
    op.execute("CREATE UNIQUE INDEX companies_workspace_id ON companies (workspace_id, id)")
    op.execute(
        """
        ALTER TABLE companies ADD CONSTRAINT companies_parent
        FOREIGN KEY (workspace_id, parent_company_id) REFERENCES companies (workspace_id, id)
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX companies_workspace_domain ON companies (workspace_id, domain)"
        " WHERE domain IS NOT NULL"
    )
    # Walking down the hierarchy looks children up by parent; id last keeps siblings ordered.
    op.execute(
        "CREATE INDEX companies_workspace_parent ON companies"
        " (workspace_id, parent_company_id, id) WHERE parent_company_id IS NOT NULL"
    )
    op.execute("CREATE INDEX companies_workspace_path ON companies (workspace_id, path)")
    op.execute(
        "CREATE INDEX companies_workspace_live ON companies (workspace_id, id)"
        " WHERE archived_at IS NULL"
    )
    op.execute(
        "CREATE INDEX companies_workspace_industry ON companies (workspace_id, lower(industry))"
    )
    op.execute("CREATE INDEX companies_workspace_country ON companies (workspace_id, country)")
    op.execute(
        "CREATE INDEX companies_workspace_employees ON companies (workspace_id, employee_count)"
    )
    # Free-text search over name and domain is a substring match per word.
    op.execute("CREATE INDEX companies_name_trgm ON companies USING gin (lower(name) gin_trgm_ops)")
    op.execute("CREATE INDEX companies_domain_trgm ON companies USING gin (domain gin_trgm_ops)")

    # The linked company's path, copied: "leads in the group of X" is a range of this
    # column, which the planner can estimate and scan in id order or by index as suits
    # the group's size, without first expanding the group into a list of companies.
    op.execute('ALTER TABLE leads ADD COLUMN company_path text COLLATE "C"')
    op.execute(
        "CREATE INDEX leads_workspace_company_path ON leads (workspace_id, company_path)"
        " WHERE company_path IS NOT NULL"
    )
    op.execute(
        """
        ALTER TABLE leads ADD CONSTRAINT leads_company
        FOREIGN KEY (workspace_id, company_id) REFERENCES companies (workspace_id, id)
        """
    )
    # Listing a company's (or a group's) leads in id order, and linking leads by the
    # domain of their email when a company gains that domain.
    op.execute("CREATE INDEX leads_workspace_company ON leads (workspace_id, company_id, id)")
    op.execute(
        "CREATE INDEX leads_workspace_email_domain ON leads"
        " (workspace_id, split_part(email, '@', 2))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS leads_workspace_email_domain")
    op.execute("DROP INDEX IF EXISTS leads_workspace_company")
    op.execute("ALTER TABLE leads DROP COLUMN IF EXISTS company_path")
    op.execute("ALTER TABLE leads DROP CONSTRAINT IF EXISTS leads_company")
    op.execute("DROP TABLE IF EXISTS companies")
