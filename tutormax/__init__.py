"""TutorMax Mail: lifecycle email for a tutoring platform."""
