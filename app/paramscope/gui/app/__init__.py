"""The application: start-up, the main window and its menus, settings, theme, file actions."""
