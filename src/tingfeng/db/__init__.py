"""Storage: schema, migrations, engine set-up and the post store."""
