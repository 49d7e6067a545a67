"""The office: its people, their roles and departments (sign-in comes with the web application)."""
