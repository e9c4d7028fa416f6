import streamlit as st

st.title('stepup')
st.info('This page is being built.')
