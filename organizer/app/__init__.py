"""The Streamlit app (`organizer ui` runs app.py): pages are thin views over `Library`."""
